"""Running one fine-tuning job on one worker, in the process that claimed it.

The worker's frames (reference §6.5) become events, checkpoints and artifacts as
they arrive. `lora` and `gguf` chunks are written to storage part by part; a job
that fails, is cancelled or loses its worker aborts what it started. A heartbeat
on the job row proves this runner alive to the other processes and notices a
cancel, which stops the run at once (the worker's connection drains).
"""

import asyncio
import base64
import binascii
import dataclasses
import logging
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from billing import services as billing
from workers.dispatch import AllBusy, FrameTimeout, JobHandle, Timeouts, WorkerGone, claim_job
from workers.protocol import FINE_TUNE_URL
from workers.services import NoWorkerFits

from . import services, storage
from .models import File
from .services import Beat
from .storage import ArtifactError, ArtifactUpload

log = logging.getLogger(__name__)

# The original worker saves a checkpoint every 25 steps and does not say which step.
CHECKPOINT_STEPS = 25
# How long a runner that finds its worker's connection row gone (or stale) waits for
# the disconnect report before deciding the process holding the socket died.
LOST_GRACE = 2.0
CHUNK_KINDS = {"lora": File.Kind.LORA, "gguf": File.Kind.GGUF}
ARTIFACT_SUFFIXES = {File.Kind.LORA: ".lora.tar.gz", File.Kind.GGUF: ".gguf"}
STATUS_MESSAGES = {
    "download_data": "The worker is downloading the training data.",
    "load_model": "The worker is loading the base model.",
    "start_train": "Training started.",
}


class RunFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class RunStopped(Exception):
    """The job is no longer running here (cancelled): stop quietly."""


def db(fn):
    return database_sync_to_async(fn)


async def run_job(*, job_pk: int, runner: str, identity: str) -> None:
    """Start a job this runner reserved on the worker `identity` and see it through."""
    spec = await db(services.run_spec)(job_pk=job_pk)
    if spec is None:
        return
    try:
        handle = await claim_job(need=_only(spec.need, identity), queue_timeout=0)
    except (NoWorkerFits, AllBusy):
        await db(services.release_run)(job_pk=job_pk, runner=runner)
        return
    try:
        if not await db(services.mark_running)(job_pk=job_pk, runner=runner, worker_id=handle.claim.worker_id):
            # Cancelled between the two claims. The connection was never sent a job;
            # the registry's audit of stale claims frees it.
            await db(services.let_go)(job_pk=job_pk, runner=runner)
            return
        await handle.send(
            openai_url=FINE_TUNE_URL,
            openai_req=spec.payload,
            ends_with_marker=True,
            max_seconds=settings.FINETUNE_TOTAL_TIMEOUT,
        )
        await JobRun(spec=spec, runner=runner).watch(handle)
    finally:
        await handle.abandon()


def _only(need, identity: str):
    """The need narrowed to the worker the scheduler saw free."""
    return dataclasses.replace(need, pubkey=identity)


class JobRun:
    """The frames of one job on one worker."""

    def __init__(self, *, spec: services.RunSpec, runner: str):
        self.spec = spec
        self.job_pk = spec.job_pk
        self.runner = runner
        self.uploads: dict[str, tuple[ArtifactUpload, int | None]] = {}
        self.completed: list[tuple[int, str, int]] = []
        self.metrics: dict[str, Any] = {}
        self.checkpoints = 0
        self.frames_seen = 0
        self.succeeded = False

    async def watch(self, handle: JobHandle) -> None:
        """Relay the frames, beating the heartbeat; record how the job ended."""
        consume = asyncio.create_task(self.consume(handle))
        ended = "finished"
        try:
            while not consume.done():
                await asyncio.wait({consume}, timeout=settings.FINETUNE_HEARTBEAT_INTERVAL)
                if consume.done():
                    break
                beat = await db(services.beat)(
                    job_pk=self.job_pk, runner=self.runner, connection_id=handle.claim.connection_id, dispatch_id=handle.job_id
                )
                if beat == Beat.LOST and not await self._silent(handle, consume):
                    continue
                if beat != Beat.RUNNING:
                    ended = beat
                    consume.cancel()
                    await asyncio.gather(consume, return_exceptions=True)
            # Clean up first: a job that reads as failed has nothing left in storage.
            await self.discard()
            if ended == Beat.LOST:
                await db(services.requeue_or_fail)(
                    job_pk=self.job_pk, runner=self.runner, reason="The Queenbee process holding the worker's connection stopped"
                )
            elif ended == "finished":
                await self._record_end(consume)
        finally:
            if not consume.done():  # we are being cancelled ourselves (shutdown)
                consume.cancel()
                await self.discard()
            await db(services.let_go)(job_pk=self.job_pk, runner=self.runner)

    async def _silent(self, handle: JobHandle, consume: asyncio.Task) -> bool:
        """The worker's connection row is gone or no longer ours: is the job lost?

        Not while frames are still queued for us (the consumer frees the row at
        the job's last frame, which may wait behind thousands of chunks here) or
        still arrive; and a disconnect the consumer reports comes within
        milliseconds. Silence after that means the process holding the socket died.
        """
        if handle.inbox.qsize():
            return False
        seen = self.frames_seen
        await asyncio.wait({consume}, timeout=LOST_GRACE)
        return not consume.done() and self.frames_seen == seen and not handle.inbox.qsize()

    async def _record_end(self, consume: asyncio.Task) -> None:
        try:
            consume.result()
        except RunStopped:
            pass
        except RunFailed as exc:
            await db(services.fail)(job_pk=self.job_pk, runner=self.runner, code=exc.code, message=exc.message)
        except WorkerGone as exc:
            await db(services.fail)(job_pk=self.job_pk, runner=self.runner, code="worker_disconnected", message=f"The worker disconnected: {exc}.")
        except FrameTimeout as exc:
            await db(services.fail)(job_pk=self.job_pk, runner=self.runner, code="worker_timeout", message=f"Timed out: {exc}.")
        except ArtifactError as exc:
            await db(services.fail)(job_pk=self.job_pk, runner=self.runner, code="invalid_artifact", message=f"The worker's artifact was refused: {exc}.")
        except Exception as exc:  # storage down, a bug: the job fails with the reason, the process goes on
            log.exception("fine-tune %s failed", self.spec.public_id)
            await db(services.fail)(job_pk=self.job_pk, runner=self.runner, code="server_error", message=f"Queenbee could not run the job: {exc!r}")

    async def consume(self, handle: JobHandle) -> None:
        timeouts = Timeouts(
            first=settings.FINETUNE_FIRST_FRAME_TIMEOUT,
            gap=settings.FINETUNE_GAP_TIMEOUT,
            total=settings.FINETUNE_TOTAL_TIMEOUT,
        )
        async for frame in handle.frames(timeouts):
            self.frames_seen += 1
            if not frame:
                raise RunFailed("worker_failed", "The worker ended the job without finishing it.")
            status = frame.get("status")
            if status is None:
                if "error" in frame:
                    raise RunFailed("worker_failed", f"The worker failed: {str(frame['error'])[:2000]}")
                raise RunFailed("invalid_worker_response", "The worker sent a frame without a status.")
            if status in CHUNK_KINDS:
                await self.chunk(CHUNK_KINDS[status], frame)
            elif status == "error":
                raise RunFailed("training_failed", f"Training failed on the worker: {str(frame.get('detail'))[:2000]}")
            elif status == "done":
                await self.finish()
                return  # the trailing {} is drained by the worker's consumer
            elif status == "log":
                await self.log(frame)
            elif status == "checkpoint":
                await self.checkpoint(frame)
            else:
                message = STATUS_MESSAGES.get(status) or (
                    f"Quantizing the merged model to {frame.get('level')}." if status == "quantize" else f"Worker status: {status}."
                )
                await self.event(message, frame)

    async def event(self, message: str, frame: dict, *, type: str = "message") -> None:
        if not await db(services.record_event)(job_pk=self.job_pk, runner=self.runner, message=message, data=frame, type=type):
            raise RunStopped()

    async def log(self, frame: dict) -> None:
        logs = frame.get("logs") if isinstance(frame.get("logs"), dict) else {}
        self.metrics.update({k: v for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        summary = ", ".join(f"{k}={v}" for k, v in logs.items())[:500]
        await self.event(f"Metrics: {summary}" if summary else "Metrics.", frame, type="metrics")

    async def checkpoint(self, frame: dict) -> None:
        self.checkpoints += 1
        step = frame.get("step") if isinstance(frame.get("step"), int) else self.checkpoints * CHECKPOINT_STEPS
        metrics = {"step": step, **self.metrics}
        if "loss" in self.metrics:
            metrics["train_loss"] = self.metrics["loss"]
        if "eval_loss" in self.metrics:
            metrics["valid_loss"] = self.metrics["eval_loss"]
        if not await db(services.record_checkpoint)(job_pk=self.job_pk, runner=self.runner, step=step, metrics=metrics, data=frame):
            raise RunStopped()

    async def chunk(self, kind: str, frame: dict) -> None:
        try:
            data = base64.b64decode(frame.get("chunk") or "", altchars=b"-_", validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise RunFailed("invalid_worker_response", f"The worker sent a {kind} chunk that is not base64.") from None
        if kind not in self.uploads:
            await self.start_upload(kind)
        upload, _ = self.uploads[kind]
        upload.add(data)
        if upload.full:
            await asyncio.to_thread(upload.flush)

    async def start_upload(self, kind: str) -> None:
        upload = storage.new_artifact_upload(self.spec.final_name + ARTIFACT_SUFFIXES[kind])
        await asyncio.to_thread(upload.start)
        self.uploads[kind] = (upload, None)
        file_pk = await db(services.start_artifact)(
            job_pk=self.job_pk, runner=self.runner, kind=kind, storage_name=upload.name, upload_id=upload.upload_id
        )
        if file_pk is None:
            raise RunStopped()
        self.uploads[kind] = (upload, file_pk)

    async def finish(self) -> None:
        """`done`: complete the uploads, then the job (in that order, so a succeeded
        job's files always exist)."""
        if File.Kind.GGUF not in self.uploads:
            raise RunFailed("worker_failed", "The worker reported done without sending the model (no gguf chunks).")
        for kind in list(self.uploads):
            upload, file_pk = self.uploads.pop(kind)
            try:
                name = await asyncio.to_thread(upload.complete)
            except BaseException:
                self.uploads[kind] = (upload, file_pk)
                raise
            self.completed.append((file_pk, name, upload.bytes))
        if not await db(services.succeed)(job_pk=self.job_pk, runner=self.runner, artifacts=self.completed):
            raise RunStopped()
        self.succeeded = True
        billing.deliver_queued()  # a remote backend's `complete`, written with the success

    async def discard(self) -> None:
        """Abort what a failed or cancelled run started; nothing to do after success."""
        if self.succeeded:
            return
        for upload, _ in self.uploads.values():
            try:
                await asyncio.to_thread(upload.abort)
            except Exception:
                log.warning("could not abort the upload of %s", upload.name, exc_info=True)
        for _, name, _ in self.completed:
            try:
                await asyncio.to_thread(storage.delete, name)
            except Exception:
                log.warning("could not delete %s", name, exc_info=True)
        self.uploads.clear()
        self.completed.clear()
        await db(services.drop_artifacts)(job_pk=self.job_pk)
