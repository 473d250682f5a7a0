"""The waiting line: requests that found every fitting worker busy.

A waiter is a row (cluster-wide). When a consumer frees its connection it hands
it straight to the oldest waiter the connection fits and tells that waiter on its
reply channel, so a freed worker wakes exactly one request, promptly, and the
line is served in arrival order. Whoever deletes a waiter's row owns it: the
consumer handing off, or the waiter leaving (deadline, or its own poll).
"""

from dataclasses import asdict
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from queenbee_site import compiled
from runtime.db import on_db_threads

from .models import Connection, Waiter
from .services import Claim, ConnectionFacts, Need, mark_busy

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


# The statements of every job's end, compiled or written once (queenbee_site/compiled.py).
_RELEASE_FIELDS = ("channel_name", "current_model", "worker__stats__punished_until", *ConnectionFacts.FIELDS)
_FREE_SQL = (
    f"UPDATE {Connection._meta.db_table} SET state = %s, job_id = '', reply_channel = '', busy_since = NULL"
    " WHERE id = %s AND job_id = %s"
)
_TAKE_WAITER_SQL = f"DELETE FROM {Waiter._meta.db_table} WHERE id = %s"


def release_or_hand_off(*, connection_id: int, job_id: str) -> tuple[str, dict] | None:
    """After a job's last frame: give the connection to the oldest waiter it fits,
    or mark it free. Returns (reply_channel, claim message fields) on a hand-off."""
    with transaction.atomic():
        rows = compiled.run(
            "release-row",
            lambda connection_id, job_id: Connection.objects.select_for_update(of=("self",))
            .filter(pk=connection_id, job_id=job_id)
            .values_list(*_RELEASE_FIELDS)[:1],
            connection_id=connection_id,
            job_id=job_id,
        )
        if not rows:
            return None
        channel_name, current_model, punished_until, *facts = rows[0]
        facts = ConnectionFacts(*facts)
        now = timezone.now()
        # A punished worker is not handed to anyone: it goes back to the pool,
        # where the ranked claim takes it only when nothing else fits.
        punished = punished_until is not None and punished_until > now
        waiters = [] if punished else compiled.run(
            "waiters",
            lambda now: Waiter.objects.filter(deadline__gt=now).values_list("pk", "job_id", "reply_channel", "need")[:HANDOFF_SCAN],
            now=now,
        )
        with connection.cursor() as cursor:
            for waiter_id, waiter_job, waiter_channel, need in waiters:
                need = Need.from_dict(need)
                if not need.fits(facts):
                    continue
                cursor.execute(_TAKE_WAITER_SQL, [waiter_id])
                if not cursor.rowcount:
                    continue  # it left, or another consumer took it
                mark_busy(
                    cursor, connection_id=connection_id, job_id=waiter_job, reply_channel=waiter_channel, since=now,
                    model=need.model or current_model,
                )
                claim = Claim(connection_id, channel_name, facts.worker_id, facts.is_web, current_model == need.model)
                return waiter_channel, {"job_id": waiter_job, "claim": asdict(claim)}
            cursor.execute(_FREE_SQL, [Connection.State.FREE.value, connection_id, job_id])
    return None


# For the consumer freeing its connection and a request giving back one it could
# not use: on the shared database threads (runtime/db.py).
arelease_or_hand_off = on_db_threads(release_or_hand_off)
