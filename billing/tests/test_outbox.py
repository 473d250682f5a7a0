"""The outbox: one process at a time sends a row, and a failure backs off."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing import outbox, services
from billing.models import OutboxMessage

pytestmark = pytest.mark.django_db


def due_message() -> OutboxMessage:
    return OutboxMessage.objects.create(payload={"command": "complete", "bill_to_token": "tok"}, next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_only_one_claim_of_a_row_wins():
    message = due_message()
    assert outbox.claim(pk=message.pk) == {"command": "complete", "bill_to_token": "tok"}
    assert outbox.claim(pk=message.pk) is None  # another process, same moment
    assert message.pk not in outbox.due_ids()


def test_a_claim_expires_so_a_dead_processs_rows_are_sent_by_another():
    message = due_message()
    outbox.claim(pk=message.pk)
    OutboxMessage.objects.filter(pk=message.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert outbox.claim(pk=message.pk) is not None


def test_a_failed_send_backs_off_doubling_and_a_refused_one_gives_up(settings):
    settings.BILLING_RETRY_FIRST_DELAY, settings.BILLING_RETRY_MAX_DELAY = 1.0, 3.0
    message = due_message()
    delays = []
    for _ in range(3):
        before = timezone.now()
        outbox.failed(pk=message.pk, error="unreachable", give_up=False)
        message.refresh_from_db()
        delays.append(round((message.next_attempt_at - before).total_seconds()))
    assert delays == [1, 2, 3] and message.state == "pending" and message.attempts == 3
    outbox.failed(pk=message.pk, error="answered 400", give_up=True)
    message.refresh_from_db()
    assert message.state == "gave_up" and message.pk not in outbox.due_ids()


def test_a_row_the_backend_keeps_failing_is_given_up_after_a_while_and_sent_again_from_the_admin(settings):
    settings.BILLING_RETRY_GIVE_UP_AFTER = 3600.0
    message = due_message()
    outbox.failed(pk=message.pk, error="answered 503", give_up=False)
    message.refresh_from_db()
    assert message.state == "pending"
    OutboxMessage.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(hours=2))
    outbox.failed(pk=message.pk, error="answered 503", give_up=False)
    message.refresh_from_db()
    assert message.state == "gave_up" and message.last_error == "gave up after 2 attempts: answered 503"
    assert message.pk not in outbox.due_ids()
    assert services.retry_outbox_now(ids=[message.pk]) == 1
    assert message.pk in outbox.due_ids()


def test_a_delivered_row_forgets_the_callers_token():
    message = due_message()
    outbox.claim(pk=message.pk)
    outbox.delivered_now(pk=message.pk)
    message.refresh_from_db()
    assert message.state == "delivered" and message.payload["bill_to_token"] == "" and message.delivered_at
