"""The waiting line: requests that found every fitting worker busy.

A waiter is a row (cluster-wide). When a consumer frees its connection it hands
it straight to the oldest waiter the connection fits and tells that waiter on its
reply channel, so a freed worker wakes exactly one request, promptly, and the
line is served in arrival order. Whoever deletes a waiter's row owns it: the
consumer handing off, or the waiter leaving (deadline, or its own poll).
"""

from dataclasses import asdict
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .models import Connection, Waiter
from .services import Claim, ConnectionFacts, Need

# Waiters a freed connection looks at, oldest first. Beyond this many, a
# waiter with an unusual need is served by its own poll instead.
HANDOFF_SCAN = 50


def enqueue(*, job_id: str, reply_channel: str, need: Need, position: float, deadline_seconds: float) -> None:
    Waiter.objects.create(
        job_id=job_id,
        reply_channel=reply_channel,
        need=need.as_dict(),
        position=position,
        deadline=timezone.now() + timedelta(seconds=deadline_seconds),
    )


def leave(*, job_id: str) -> bool:
    """Leave the line. False means a connection is already on its way to us."""
    deleted, _ = Waiter.objects.filter(job_id=job_id).delete()
    return bool(deleted)


def line_length() -> int:
    return Waiter.objects.filter(deadline__gt=timezone.now()).count()


def sweep_expired(*, grace_seconds: float) -> int:
    """Waiters whose process died before they could leave."""
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    return Waiter.objects.filter(deadline__lt=cutoff).delete()[0]


def release_or_hand_off(*, connection_id: int, job_id: str) -> tuple[str, dict] | None:
    """After a job's last frame: give the connection to the oldest waiter it fits,
    or mark it free. Returns (reply_channel, claim message fields) on a hand-off."""
    with transaction.atomic():
        row = Connection.objects.select_for_update(of=("self",)).filter(pk=connection_id, job_id=job_id).values_list(
            "channel_name", "current_model", "worker__stats__punished_until", *ConnectionFacts.FIELDS
        ).first()
        if row is None:
            return None
        channel_name, current_model, punished_until, *facts = row
        facts = ConnectionFacts(*facts)
        # A punished worker is not handed to anyone: it goes back to the pool,
        # where the ranked claim takes it only when nothing else fits.
        punished = punished_until is not None and punished_until > timezone.now()
        for waiter in [] if punished else Waiter.objects.filter(deadline__gt=timezone.now())[:HANDOFF_SCAN]:
            need = Need.from_dict(waiter.need)
            if not need.fits(facts):
                continue
            if not Waiter.objects.filter(pk=waiter.pk).delete()[0]:
                continue  # it left, or another consumer took it
            Connection.objects.filter(pk=connection_id).update(
                state=Connection.State.BUSY,
                job_id=waiter.job_id,
                reply_channel=waiter.reply_channel,
                busy_since=timezone.now(),
                current_model=need.model or current_model,
            )
            claim = Claim(connection_id, channel_name, facts.worker_id, facts.is_web, current_model == need.model)
            return waiter.reply_channel, {"job_id": waiter.job_id, "claim": asdict(claim)}
        Connection.objects.filter(pk=connection_id, job_id=job_id).update(
            state=Connection.State.FREE, job_id="", reply_channel="", busy_since=None
        )
    return None
