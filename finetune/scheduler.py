"""Each process's fine-tune scheduler: start queued jobs on free capable workers.

Every process runs one, so a queued job is started by whichever process first
sees a capable worker free (any process can reach any worker through the channel
layer). It ticks every FINETUNE_POLL_INTERVAL and at once when a job is created
here; each tick also takes over the jobs of runners that stopped beating.

Daphne has no lifespan events, so the first HTTP request starts it (a load
balancer's health check will do).
"""

import asyncio
import logging
import uuid

from channels.db import database_sync_to_async
from django.conf import settings

from workers.liveness import process_name, registry

from . import services, storage
from .runner import run_job

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self) -> None:
        self.runner = ""
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._runs: set[asyncio.Task] = set()

    def ensure(self) -> None:
        """Start the loop on the running event loop, once."""
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._task.get_loop() is loop:
            return
        # Unique per process lifetime: a restarted process with the same name must
        # not be taken for the runner its predecessor was.
        self.runner = f"{process_name()}/{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._loop())

    def kick(self) -> None:
        """A job was queued: look now rather than at the next tick."""
        self.ensure()
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            if not registry.stopping:
                try:
                    await self.tick()
                except Exception:  # database down: try again next tick
                    log.warning("fine-tune scheduler tick failed", exc_info=True)
            try:
                await asyncio.wait_for(self._wake.wait(), settings.FINETUNE_POLL_INTERVAL)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def tick(self) -> None:
        realm = storage.realm()
        for name, upload_id in await database_sync_to_async(services.recover_orphans)(realm=realm):
            await asyncio.to_thread(storage.abort_s3_upload, name=name, upload_id=upload_id)
        process_id = None
        if settings.CHANNEL_LAYERS["default"]["BACKEND"].endswith("InMemoryChannelLayer"):
            # Only the sockets this process holds are reachable (one process in the
            # embedded default; tests run several on one database).
            process_id = registry.process_id
            if process_id is None:
                return
        taken = await database_sync_to_async(services.take_runnable_jobs)(realm=realm, runner=self.runner, process_id=process_id)
        for job_pk, identity in taken:
            task = asyncio.create_task(self._run(job_pk, identity))
            self._runs.add(task)
            task.add_done_callback(self._runs.discard)

    async def _run(self, job_pk: int, identity: str) -> None:
        try:
            await run_job(job_pk=job_pk, runner=self.runner, identity=identity)
        except Exception:
            log.exception("fine-tune runner crashed; the job is recovered once its heartbeat is stale")


scheduler = Scheduler()


async def start_on_request(sender, scope=None, **kwargs) -> None:
    """`request_started` receiver: the first ASGI request of a process starts its
    scheduler (not a test client's request, whose event loop is thrown away)."""
    if scope is not None:
        scheduler.ensure()
