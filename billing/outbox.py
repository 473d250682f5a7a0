"""Delivering `complete` commands to the remote billing backend from the outbox table.

Each process with a remote backend runs one delivery loop, a task of the process
runtime (billing/apps.py). The loop sends due rows, then sleeps until woken by a
new row or for BILLING_OUTBOX_POLL, which also picks up rows a dead process
left. Rows are claimed by compare-and-set, so however many processes run, each
row is sent by one at a time. Last in a drain, after the last jobs' records
are written, it sends what is due once more (`flush`).
"""

import logging
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from runtime.loops import Periodic

from . import remote
from .models import OutboxMessage

log = logging.getLogger(__name__)

# Rows sent per pass: one slow backend answer holds the rest, so keep it short.
BATCH = 20

async def _pass() -> None:
    await deliver_due()


async def _until_next() -> float:
    try:
        return await database_sync_to_async(seconds_to_next)()
    except Exception:  # the database is down: look again after the poll
        log.warning("could not read the billing outbox", exc_info=True)
        return settings.BILLING_OUTBOX_POLL


delivery = Periodic("billing-outbox", run=_pass, wait=_until_next)


def ensure_delivery(*, wake: bool = False) -> None:
    """`wake` this process's delivery loop to send now (the runtime starts it)."""
    if wake:
        delivery.wake()


async def flush() -> None:
    """The drain's last step: stop the loop, then send what is due once more."""
    await delivery.stop()
    await deliver_due()


async def deliver_due() -> int:
    """Send every due row this process can claim; returns how many were delivered."""
    delivered = 0
    for pk in await database_sync_to_async(due_ids)():
        payload = await database_sync_to_async(claim)(pk=pk)
        if payload is None:
            continue  # another process has it
        try:
            await remote.complete(payload)
        except remote.BillingError as exc:
            await database_sync_to_async(failed)(pk=pk, error=str(exc), give_up=exc.refused)
            if not exc.refused:
                break  # the backend is down: the others would fail too
        else:
            await database_sync_to_async(delivered_now)(pk=pk)
            delivered += 1
    return delivered


def _claimable(now) -> Q:
    return Q(state=OutboxMessage.State.PENDING) & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))


def due_ids() -> list[int]:
    now = timezone.now()
    return list(
        OutboxMessage.objects.filter(_claimable(now), next_attempt_at__lte=now).order_by("next_attempt_at").values_list("pk", flat=True)[:BATCH]
    )


def claim(*, pk: int) -> dict | None:
    """Compare-and-set: only the process whose UPDATE matches gets the payload."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.BILLING_OUTBOX_LEASE)
    if not OutboxMessage.objects.filter(_claimable(now), pk=pk).update(claimed_until=lease):
        return None
    return OutboxMessage.objects.filter(pk=pk).values_list("payload", flat=True).first()


def delivered_now(*, pk: int) -> None:
    message = OutboxMessage.objects.get(pk=pk)
    # The caller's token was only needed to send it.
    payload = {**message.payload, "bill_to_token": ""}
    OutboxMessage.objects.filter(pk=pk).update(
        state=OutboxMessage.State.DELIVERED, delivered_at=timezone.now(), attempts=message.attempts + 1,
        claimed_until=None, payload=payload, last_error="",
    )


def failed(*, pk: int, error: str, give_up: bool) -> None:
    """A send failed: try again later, doubling the pause, or give up when the
    backend refused it (`give_up`) or has failed it for BILLING_RETRY_GIVE_UP_AFTER
    seconds since the row was written. A row given up waits in the admin, where
    "Send again now" queues it again."""
    message = OutboxMessage.objects.get(pk=pk)
    attempts, now = message.attempts + 1, timezone.now()
    delay = min(settings.BILLING_RETRY_MAX_DELAY, settings.BILLING_RETRY_FIRST_DELAY * 2 ** (attempts - 1))
    too_long = settings.BILLING_RETRY_GIVE_UP_AFTER > 0 and (now - message.created_at).total_seconds() > settings.BILLING_RETRY_GIVE_UP_AFTER
    if too_long and not give_up:
        error = f"gave up after {attempts} attempts: {error}"
    OutboxMessage.objects.filter(pk=pk).update(
        state=OutboxMessage.State.GAVE_UP if give_up or too_long else OutboxMessage.State.PENDING,
        attempts=attempts, claimed_until=None, last_error=error[:500],
        next_attempt_at=now + timedelta(seconds=delay),
    )
    if give_up or too_long:
        log.error("billing complete for outbox row %s given up (attempt %s): %s", pk, attempts, error)
    else:
        log.warning("billing complete for outbox row %s failed (attempt %s): %s", pk, attempts, error)


def seconds_to_next() -> float:
    """Sleep until the next due row, but at most BILLING_OUTBOX_POLL."""
    now = timezone.now()
    next_at = OutboxMessage.objects.filter(_claimable(now)).order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first()
    if next_at is None:
        return settings.BILLING_OUTBOX_POLL
    return min(settings.BILLING_OUTBOX_POLL, max(0.05, (next_at - now).total_seconds()))
