"""System checks refuse billing settings that would lose or leak money."""

from billing.checks import check_billing, check_billing_transport


def ids(settings) -> set[str]:
    return {problem.id for problem in check_billing(None) + check_billing_transport(None)}


def test_the_embedded_default_passes(settings):
    assert ids(settings) == set()


def test_a_remote_backend_without_a_secret_or_over_plain_http_is_flagged(settings):
    settings.BILLING_URL, settings.BILLING_SECRET = "http://billing.internal/api", ""
    assert ids(settings) == {"queenbee.W201", "queenbee.W202"}
    settings.BILLING_URL, settings.BILLING_SECRET = "https://billing.example.com/api", "s3cret"
    assert ids(settings) == set()


def test_plain_http_billing_is_flagged_with_debug_on_too(settings):
    settings.DEBUG, settings.BILLING_URL, settings.BILLING_SECRET = True, "http://billing.internal/api", "s3cret"
    assert ids(settings) == {"queenbee.W202"}


def test_a_worker_share_above_one_is_an_error(settings):
    settings.BILLING_WORKER_SHARE = 1.5
    assert ids(settings) == {"queenbee.E201"}
