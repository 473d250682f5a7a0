"""Each process's fine-tune scheduler: start queued jobs on free capable workers.

Every process runs one, so a queued job is started by whichever process first
sees a capable worker free (any process can reach any worker through the channel
layer). It ticks every FINETUNE_POLL_INTERVAL and at once when a job is created
here; each tick also takes over the jobs of runners that stopped beating.

It is a task of the process runtime (finetune/apps.py): it starts when the
process serves and stops ticking early in a drain. Runs under way are left
to finish or die with the process; a runner that stops beating is taken over by
another process's scheduler.
"""

import asyncio
import logging
import uuid

from channels.db import database_sync_to_async
from django.conf import settings

from runtime.backends import backends
from runtime.loops import Periodic
from workers.liveness import process_name, registry

from . import services, storage
from .runner import run_job

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self) -> None:
        self.runner = ""
        self._loop = Periodic("finetune-scheduler", run=self.tick, wait=self._interval)
        self._runs: set[asyncio.Task] = set()

    async def start(self) -> None:
        # Unique per process lifetime: a restarted process with the same name must
        # not be taken for the runner its predecessor was.
        self.runner = f"{process_name()}/{uuid.uuid4().hex[:8]}"
        await self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def kick(self) -> None:
        """A job was queued: look now rather than at the next tick."""
        self._loop.wake()

    @staticmethod
    async def _interval() -> float:
        return settings.FINETUNE_POLL_INTERVAL

    async def tick(self) -> None:
        realm = storage.realm()
        for name, upload_id in await database_sync_to_async(services.recover_orphans)(realm=realm):
            await asyncio.to_thread(storage.abort_s3_upload, name=name, upload_id=upload_id)
        process_id = None
        if backends().own_sockets_only:
            # Only a worker connected here can be given the job.
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
