"""This process's row in the registry, and the heartbeat that keeps it alive."""

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
from .models import Connection, ServerProcess, Waiter, Worker

log = logging.getLogger(__name__)


def process_name() -> str:
    return settings.PROCESS_NAME or f"{socket.gethostname()}:{os.getpid()}"


def start_process(*, name: str) -> int:
    """Register this process, replacing a crashed predecessor of the same name."""
    with transaction.atomic():
        ServerProcess.objects.filter(name=name).delete()
        sweep_dead_processes()
        return ServerProcess.objects.create(name=name, heartbeat_at=timezone.now()).pk


def beat(*, process_id: int) -> bool:
    """Refresh the heartbeat; False if the row is gone (we were presumed dead)."""
    updated = ServerProcess.objects.filter(pk=process_id).update(heartbeat_at=timezone.now())
    sweep_dead_processes()
    return bool(updated)


def sweep_dead_processes() -> int:
    """Delete processes whose heartbeat stopped, with their connections."""
    cutoff = timezone.now() - timedelta(seconds=settings.PROCESS_GRACE)
    deleted, _ = ServerProcess.objects.filter(heartbeat_at__lt=cutoff).delete()
    # Waiters whose process died before they could leave the line.
    Waiter.objects.filter(deadline__lt=cutoff).delete()
    if deleted:
        Worker.objects.filter(ephemeral=True, connections__isnull=True).delete()
    return deleted


def live_connections():
    """Connections held by processes whose heartbeat is fresh."""
    cutoff = timezone.now() - timedelta(seconds=settings.PROCESS_GRACE)
    return Connection.objects.filter(process__heartbeat_at__gte=cutoff, process__stopping=False)


class ProcessRegistry:
    """Lazily registers this process on first use and runs its heartbeat task.

    Daphne has no lifespan events, so the first worker to connect starts it.
    """

    def __init__(self) -> None:
        self.process_id: int | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None

    async def ensure(self) -> int:
        async with self._lock:
            if self.process_id is None:
                self.process_id = await database_sync_to_async(start_process)(name=process_name())
                self._task = asyncio.create_task(self._heartbeat())
            return self.process_id

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(settings.PROCESS_HEARTBEAT_INTERVAL)
            try:
                alive = await database_sync_to_async(beat)(process_id=self.process_id)
            except Exception:  # database down: try again next beat, keep sockets
                log.warning("heartbeat failed", exc_info=True)
                continue
            if not alive:
                await self.forget(self.process_id)

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
            events.process_group(old), events.close(code=1012, reason="coordinator restarting")
        )


registry = ProcessRegistry()
