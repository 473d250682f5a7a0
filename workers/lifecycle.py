"""The workers' tasks in the process runtime (runtime/process.py): the heartbeat
that keeps this process's registry row alive, and its part of the SIGTERM drain.

The drain, as the runtime runs it (`Stop` phases):
- REFUSE: the process row is marked stopping, so no claim anywhere picks its
  workers, and they leave the live pool;
- FINISH: the jobs running here finish, up to SHUTDOWN_GRACE;
- DISCONNECT: the heartbeat stops, the workers are closed with 1001 "going
  away" (they reconnect to another process), and the row is deleted once their
  closing handshakes are done (or after CLOSE_WAIT).
"""

import asyncio
import logging
import time

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from runtime.process import Stop, Task

from . import events
from .liveness import beat, forget_dead_channels, has_connections, registry, stop_process
from .live import live_pool
from .protocol import CLOSE_GOING_AWAY

log = logging.getLogger(__name__)

# After sending "going away", how long shutdown waits for workers to finish the
# closing handshake before the server stops.
CLOSE_WAIT = 3.0
# How often the drain looks whether the running jobs have finished.
FINISH_POLL = 0.05


class Heartbeat:
    """Every PROCESS_HEARTBEAT_INTERVAL, once the process is registered: refresh
    its row (and sweep dead processes), its entry in the live pool, forget
    connections whose consumer is gone, and audit claims left busy too long."""

    def __init__(self) -> None:
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="process-heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(settings.PROCESS_HEARTBEAT_INTERVAL)
            process_id = registry.process_id
            if process_id is None:
                continue  # no worker has connected yet
            try:
                alive = await self.beat(process_id)
            except Exception:  # database or channel layer down: keep sockets, try next beat
                log.warning("heartbeat failed", exc_info=True)
                continue
            if not alive:
                await registry.forget(process_id)

    async def beat(self, process_id: int) -> bool:
        if not await database_sync_to_async(beat)(process_id=process_id):
            return False
        pool = live_pool()
        await pool.beat(process_id=process_id)
        live = frozenset(registry.live_channels)
        await database_sync_to_async(forget_dead_channels)(process_id=process_id, live=live)
        await pool.forget_dead_channels(process_id=process_id, live=live)
        layer = get_channel_layer()
        for channel_name, job_id in await pool.stale_claims(process_id=process_id):
            await layer.send(channel_name, events.audit(job_id=job_id))
        return True


heartbeat = Heartbeat()


async def leave_the_pool() -> None:
    """Stop offering this process's workers, to this process and every other."""
    if registry.process_id is None:
        return
    await database_sync_to_async(stop_process)(process_id=registry.process_id, remove=False)
    await live_pool().beat(process_id=registry.process_id)  # stopping: its workers leave the pool


async def let_jobs_finish() -> None:
    log.warning("stopping: letting %d running jobs finish", registry.active_jobs)
    deadline = time.monotonic() + settings.SHUTDOWN_GRACE
    while registry.active_jobs > 0 and time.monotonic() < deadline:
        await asyncio.sleep(FINISH_POLL)


async def send_workers_away() -> None:
    """Close every worker socket with "going away" and forget the process."""
    await heartbeat.stop()  # a beat after the row is gone would register the process again
    process_id = registry.process_id
    if process_id is None:
        return
    await get_channel_layer().group_send(events.process_group(process_id), events.close(code=CLOSE_GOING_AWAY, reason="coordinator going away"))
    # Wait for the closing handshakes (each consumer's disconnect deletes its row).
    deadline = time.monotonic() + CLOSE_WAIT
    while time.monotonic() < deadline and await database_sync_to_async(has_connections)(process_id=process_id):
        await asyncio.sleep(FINISH_POLL)
    await database_sync_to_async(stop_process)(process_id=process_id, remove=True)


TASKS = (
    Task(name="workers.leave-pool", order=Stop.REFUSE, stop=leave_the_pool),
    Task(name="workers.running-jobs", order=Stop.FINISH, stop=let_jobs_finish, stop_timeout=None),
    Task(name="workers.heartbeat", order=Stop.DISCONNECT, start=heartbeat.start, stop=send_workers_away, stop_timeout=CLOSE_WAIT + 2),
)
