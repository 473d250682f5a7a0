"""The billing backend is chosen once from BILLING_URL, and api.auth learns from it who vouches for tokens."""

from api import auth
from billing import backends


def test_it_bills_with_the_local_ledger_without_billing_url(settings):
    settings.BILLING_URL = ""
    assert isinstance(backends.active(), backends.LocalLedger)
    assert auth._voucher is None


def test_it_bills_remotely_and_vouches_for_tokens_with_billing_url(settings):
    settings.BILLING_URL = "https://billing.example/api"
    active = backends.active()
    assert isinstance(active, backends.RemoteBilling)
    assert auth._voucher is active
