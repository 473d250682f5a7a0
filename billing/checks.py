"""System checks for billing settings that would lose or leak money."""

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def check_billing(app_configs, **kwargs):
    problems = []
    if not 0 <= settings.BILLING_WORKER_SHARE <= 1:
        problems.append(Error(
            "BILLING_WORKER_SHARE must be between 0 and 1: workers would be paid more than callers are charged.",
            id="queenbee.E201",
        ))
    if settings.BILLING_URL and not settings.BILLING_SECRET:
        problems.append(Warning(
            "BILLING_URL is set without BILLING_SECRET: the billing backend cannot tell Queenbee from anyone else.",
            hint="Set BILLING_SECRET to the secret the backend expects.",
            id="queenbee.W201",
        ))
    return problems


@register(deploy=True)
def check_billing_transport(app_configs, **kwargs):
    """`check --deploy` only, DEBUG or not: a local backend over http is normal in development."""
    if settings.BILLING_URL.startswith("http://"):
        return [Warning(
            "BILLING_URL is plain http: callers' tokens and the billing secret travel in clear.",
            hint="Use https, or a private network you trust.",
            id="queenbee.W202",
        )]
    return []
