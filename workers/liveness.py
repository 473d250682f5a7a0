"""This process's row in the registry: registering it, beating, and sweeping the
rows of processes whose heartbeat stopped (the beat itself: workers/lifecycle.py)."""

import asyncio
import logging
import os
import socket
from datetime import timedelta

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import events
from .models import Connection, ServerProcess, Worker
from .protocol import CLOSE_GOING_AWAY, CLOSE_RESTARTING

log = logging.getLogger(__name__)


def grace() -> timedelta:
    return timedelta(seconds=settings.PROCESS_GRACE)


def process_name() -> str:
    return settings.PROCESS_NAME or f"{socket.gethostname()}:{os.getpid()}"


def start_process(*, name: str) -> int:
    """Register this process, replacing a crashed predecessor of the same name."""
    with transaction.atomic():
        ServerProcess.objects.filter(name=name).delete()
        sweep_dead_processes()
        now = timezone.now()
        return ServerProcess.objects.create(name=name, heartbeat_at=now, expires_at=now + grace()).pk


def beat(*, process_id: int) -> bool:
    """Refresh the heartbeat; False if the row is gone (we were presumed dead)."""
    now = timezone.now()
    updated = ServerProcess.objects.filter(pk=process_id).update(heartbeat_at=now, expires_at=now + grace())
    sweep_dead_processes()
    return bool(updated)


def forget_dead_channels(*, process_id: int, live: frozenset[str]) -> int:
    """Delete this process's rows whose consumer is gone (its cleanup failed, say
    while the database was down). Cheap when nothing is wrong: one count."""
    rows = Connection.objects.filter(process_id=process_id)
    if rows.count() <= len(live):
        return 0
    dead = [name for name in rows.values_list("channel_name", flat=True) if name not in live]
    return rows.filter(channel_name__in=dead).delete()[0]


def has_connections(*, process_id: int) -> bool:
    return Connection.objects.filter(process_id=process_id).exists()


def stop_process(*, process_id: int, remove: bool) -> None:
    """Stop offering this process's workers; `remove` forgets the process entirely."""
    if remove:
        ServerProcess.objects.filter(pk=process_id).delete()
    else:
        ServerProcess.objects.filter(pk=process_id).update(stopping=True)


def sweep_dead_processes() -> int:
    """Delete processes whose heartbeat stopped, with their connections."""
    deleted, _ = ServerProcess.objects.filter(expires_at__lt=timezone.now()).delete()
    if deleted:
        Worker.objects.filter(ephemeral=True, connections__isnull=True).delete()
    return deleted


def live_connections(*, now=None):
    """Connections held by processes whose heartbeat is fresh (at `now`)."""
    return Connection.objects.filter(process__expires_at__gte=now or timezone.now(), process__stopping=False)


class ProcessRegistry:
    """This process's row in the registry and what it holds: the jobs it runs and
    its live worker consumers. The heartbeat and the drain that keep the row
    true run as tasks of the process runtime (workers/lifecycle.py).

    The first worker to connect registers the process (`ensure`).
    """

    def __init__(self) -> None:
        self.process_id: int | None = None
        self.active_jobs = 0
        # Channel names of this process's live worker consumers (see resilient.py).
        self.live_channels: set[str] = set()
        self._lock = asyncio.Lock()

    async def ensure(self) -> int:
        async with self._lock:
            if self.process_id is None:
                self.process_id = await database_sync_to_async(start_process)(name=process_name())
            return self.process_id

    async def forget(self, old: int) -> None:
        """Our row was swept (we stalled past the grace period), so our connection
        rows are gone: register again and close our sockets so their workers
        connect again."""
        async with self._lock:
            if self.process_id != old:
                return
            log.warning("process registration lost; closing worker sockets")
            self.process_id = await database_sync_to_async(start_process)(name=process_name())
        await get_channel_layer().group_send(
            events.process_group(old), events.close(code=CLOSE_RESTARTING, reason="coordinator restarting")
        )


registry = ProcessRegistry()
