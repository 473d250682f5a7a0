"""The billing pages of the admin: balances move only with a ledger row."""

import pytest
from django.utils import timezone

from billing import services
from billing.models import LedgerEntry, OutboxMessage

pytestmark = pytest.mark.django_db


def test_every_billing_page_renders(admin_client):
    account = services.create_account(name="admin-pages", credits=5)
    message = OutboxMessage.objects.create(payload={"command": "complete", "bill_to_token": "secret-token"}, next_attempt_at=timezone.now())
    for url in ("/admin/billing/account/", f"/admin/billing/account/{account.pk}/change/", "/admin/billing/ledgerentry/",
                "/admin/billing/price/", "/admin/billing/outboxmessage/", f"/admin/billing/outboxmessage/{message.pk}/change/"):
        page = admin_client.get(url)
        assert page.status_code == 200, url
        assert "secret-token" not in page.text


def test_a_top_up_entered_in_the_admin_moves_the_balance(admin_client):
    account = services.create_account(name="admin-top-up", credits=5)
    response = admin_client.post("/admin/billing/ledgerentry/add/", {"account": account.pk, "kind": "top_up", "amount": 20, "note": "bought"})
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.balance == 25
    assert LedgerEntry.objects.filter(account=account).order_by("pk").last().balance_after == 25


def test_an_outbox_row_can_be_sent_again_now(admin_client):
    message = OutboxMessage.objects.create(payload={}, state="gave_up", next_attempt_at=timezone.now(), attempts=3)
    admin_client.post("/admin/billing/outboxmessage/", {"action": "retry_now", "_selected_action": [message.pk]})
    message.refresh_from_db()
    assert message.state == "pending" and message.next_attempt_at <= timezone.now()
