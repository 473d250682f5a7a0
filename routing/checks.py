"""System checks for dangerous setting combinations.

The deployment ones (`manage.py check --deploy`, beside Django's own) run whatever
DEBUG says: a deploy that forgot DEBUG=0 must hear about its key and hosts too
(Django's security.W018 names DEBUG itself).
"""

from django.conf import settings
from django.core.checks import Warning, register


@register(deploy=True)
def check_channel_layer(app_configs, **kwargs):
    backend = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    if backend.endswith("InMemoryChannelLayer"):
        return [
            Warning(
                "The in-memory channel layer only works inside one process.",
                hint="Fine for one process (the embedded default). Set REDIS_URL so several Queenbee processes can act as one.",
                id="queenbee.W001",
            )
        ]
    return []


@register(deploy=True)
def check_secret_key(app_configs, **kwargs):
    if settings.SECRET_KEY_GENERATED:
        return [
            Warning(
                f"SECRET_KEY is not set: Queenbee signs with the key it generated in {settings.SECRET_KEY_FILE}.",
                hint="Fine for one machine if that file stays private and is backed up with the database. "
                "Set SECRET_KEY (50+ random characters) to keep the key out of the project folder.",
                id="queenbee.W002",
            )
        ]
    return []


@register(deploy=True)
def check_allowed_hosts(app_configs, **kwargs):
    if "*" in settings.ALLOWED_HOSTS:
        return [
            Warning(
                "ALLOWED_HOSTS is '*': any Host header is believed, so links Queenbee builds from it "
                "(the web pages' commands, signed download URLs without PUBLIC_URL) can point anywhere.",
                hint="Set ALLOWED_HOSTS to the names Queenbee is served under.",
                id="queenbee.W003",
            )
        ]
    return []


@register(deploy=True)
def check_public_url(app_configs, **kwargs):
    if settings.PUBLIC_URL.startswith("http://"):
        return [
            Warning(
                "PUBLIC_URL is plain http: signed download URLs travel in clear, and the original worker only downloads https URLs.",
                hint="Serve Queenbee over https and set PUBLIC_URL to its https address.",
                id="queenbee.W004",
            )
        ]
    return []
