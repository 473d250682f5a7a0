"""This process's row in the registry, and the heartbeat that keeps it alive."""

import asyncio
import logging
import os
import signal
import socket
import sys
import time
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

# After sending "going away", how long shutdown waits for workers to finish the
# closing handshake before the server stops.
CLOSE_WAIT = 3.0


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
    """This process's lifecycle: its registry row and heartbeat, the jobs it runs,
    and a graceful shutdown on SIGTERM.

    Daphne has no lifespan events, so the first worker to connect registers the
    process, and the first request or worker installs the SIGTERM handler.
    """

    def __init__(self) -> None:
        self.process_id: int | None = None
        self.stopping = False
        self.active_jobs = 0
        # Channel names of this process's live worker consumers (see resilient.py).
        self.live_channels: set[str] = set()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._signals_installed = False
        # The server's own SIGTERM handler, called once the drain is done.
        self._server_sigterm = None
        # Awaited by the SIGTERM drain once the running jobs are done (the
        # routing app's batch writer registers its own here).
        self.drain_hooks: list = []
        # The live pool (workers/pool.py), set when it is built: it imports this module.
        self.pool = None

    async def ensure(self) -> int:
        self.install_signal_handlers()
        async with self._lock:
            if self.process_id is None:
                self.process_id = await database_sync_to_async(start_process)(name=process_name())
                self._task = asyncio.create_task(self._heartbeat())
            return self.process_id

    def install_signal_handlers(self) -> None:
        if self._signals_installed:
            return
        self._signals_installed = True
        try:
            self._server_sigterm = signal.getsignal(signal.SIGTERM)
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(self.shutdown()))
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (uvloop: ValueError), or no signals
            pass

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(settings.PROCESS_HEARTBEAT_INTERVAL)
            try:
                alive = await database_sync_to_async(beat)(process_id=self.process_id)
                if alive and self.pool is not None:
                    await self.pool.beat(process_id=self.process_id)
                if alive:
                    live = frozenset(self.live_channels)
                    await database_sync_to_async(forget_dead_channels)(process_id=self.process_id, live=live)
                    if self.pool is not None:
                        await self.pool.forget_dead_channels(process_id=self.process_id, live=live)
                    await self._audit_claims()
            except Exception:  # database or channel layer down: keep sockets, try next beat
                log.warning("heartbeat failed", exc_info=True)
                continue
            if not alive:
                await self.forget(self.process_id)

    async def _audit_claims(self) -> None:
        if self.pool is None:
            return
        layer = get_channel_layer()
        for channel_name, job_id in await self.pool.stale_claims(process_id=self.process_id):
            await layer.send(channel_name, events.audit(job_id=job_id))

    async def shutdown(self) -> None:
        """SIGTERM: refuse new work, let running jobs finish (up to SHUTDOWN_GRACE),
        then close worker sockets with "going away" so workers reconnect elsewhere."""
        if self.stopping:
            return
        self.stopping = True
        try:
            await self._drain()
        except Exception:  # the database or Redis failed mid-drain: stop anyway
            log.exception("the SIGTERM drain failed; stopping without it")
        finally:
            self._stop_server()

    async def _drain(self) -> None:
        log.warning("SIGTERM: draining %d running jobs", self.active_jobs)
        if self.process_id is not None:
            await database_sync_to_async(stop_process)(process_id=self.process_id, remove=False)
            if self.pool is not None:
                await self.pool.beat(process_id=self.process_id)  # stopping: its workers leave the pool
        deadline = time.monotonic() + settings.SHUTDOWN_GRACE
        while self.active_jobs > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self._run_drain_hooks(deadline)
        if self.process_id is not None:
            await get_channel_layer().group_send(
                events.process_group(self.process_id), events.close(code=CLOSE_GOING_AWAY, reason="coordinator going away")
            )
            # Wait for the closing handshakes (each consumer's disconnect deletes its row).
            deadline = time.monotonic() + CLOSE_WAIT
            while time.monotonic() < deadline and await database_sync_to_async(has_connections)(process_id=self.process_id):
                await asyncio.sleep(0.05)
            await database_sync_to_async(stop_process)(process_id=self.process_id, remove=True)
        # Again: jobs that ended after the first run (a caller's job abandoned as
        # the count reached 0, or past the grace) have records to write too.
        await self.write_pending()

    async def write_pending(self) -> None:
        """Run the drain hooks (the batch writer: write every finished job).
        Also run by the ASGI lifespan shutdown, after a server such as uvicorn
        has let its last requests end (queenbee_site/lifespan.py)."""
        await self._run_drain_hooks(time.monotonic() + CLOSE_WAIT)

    def _stop_server(self) -> None:
        """Hand over to the server's own shutdown: stop twisted's reactor under
        daphne (its signal handler is not Python's), or call the handler the
        server installed (uvicorn: close listeners, wait for open requests, exit)."""
        reactor = sys.modules.get("twisted.internet.reactor")
        if reactor is not None and reactor.running:
            reactor.stop()
        elif callable(self._server_sigterm):
            self._server_sigterm(signal.SIGTERM, None)
        else:  # no server handler: end the process as SIGTERM would have
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
            signal.raise_signal(signal.SIGTERM)

    async def _run_drain_hooks(self, deadline: float) -> None:
        for hook in self.drain_hooks:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 1.0)):
                    await hook()
            except Exception:
                log.exception("a drain hook failed")

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
