"""The `/worker` websocket: one consumer per connected worker.

It only translates. The first frame is the connect message (§2 of the
reference); after that, jobs arrive from the channel layer and are forwarded
as `{"openai_url", "openai_req"}`, and the worker's frames are relayed to the
job's reply channel until the job's last frame, when the connection is freed.
Protocol errors are raised as ProtocolError and become one close reason here.
"""

import asyncio
import json
import logging
from dataclasses import dataclass

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from django.conf import settings
from django.db import DatabaseError

from runtime import observe
from runtime.db import on_db_threads

from . import events, limits, services
from .live import live_pool
from .liveness import registry
from .mailbox import mailbox
from .pool import PoolDown
from .protocol import (
    CLOSE_BAD_SIGNATURE, CLOSE_RESTARTING, CLOSE_TIMEOUT, ProtocolError, decode_frame, job_frame, parse_connect_message,
)
from .resilient import ResilientConsumer
from .signature import BadSignature, verify_connect_signature

log = logging.getLogger(__name__)

# A connection's hot-path writes run on the shared database threads (runtime/db.py).
_register = on_db_threads(services.register_connection)

# A request handed this connection sends its job within milliseconds; after this
# long it has died, and the connection goes to the next in line.
HAND_OFF_TIMEOUT = 10.0
# Between attempts to free a connection while the database is unreachable.
RELEASE_RETRY_PAUSE = 1.0


@dataclass
class ActiveJob:
    job_id: str
    reply_channel: str
    ends_with_marker: bool
    abandoned: bool = False
    timer: asyncio.Task | None = None

    def is_last(self, frame: dict) -> bool:
        """A single-reply job ends with its reply; a stream with `{}` or an error frame."""
        if not self.ends_with_marker:
            return True
        return not frame or ("error" in frame and "status" not in frame)


class WorkerConsumer(ResilientConsumer):
    connection_id: int | None = None
    worker_id: int | None = None
    process_id: int | None = None
    guard: limits.SocketLimits | None = None
    job: ActiveJob | None = None
    connect_timer: asyncio.Task | None = None
    expected_job: str = ""
    expected_timer: asyncio.Task | None = None
    retry_timer: asyncio.Task | None = None

    async def connect(self) -> None:
        await self.accept()
        self.guard = limits.SocketLimits(self.scope)
        if refusal := await self.guard.refusal():
            return await self.refuse(refusal)
        self.connect_timer = asyncio.create_task(self._close_after(settings.WORKER_CONNECT_TIMEOUT, "no connect message"))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            self.guard.count_frame()
            frame = decode_frame(text_data, bytes_data, max_bytes=settings.WORKER_MAX_FRAME_BYTES)
            if self.connection_id is None:
                await self.register(frame)
            else:
                await self.relay(frame, text_data)
        except ProtocolError as exc:
            if self.connection_id is None or exc.fatal:
                await self.refuse(exc)
            else:
                # Garbage from a registered worker is counted (and punished by
                # stats), never relayed and never fatal to the connection.
                await database_sync_to_async(services.count_frames)(connection_id=self.connection_id, worker_id=self.worker_id, bad=1)

    async def refuse(self, exc: ProtocolError) -> None:
        """Close with the reason, once: frames queued behind the close still arrive."""
        if self.guard.first_refusal(exc, registered=self.connection_id is not None):
            await self.close(code=exc.code, reason=exc.reason)

    async def register(self, frame: dict) -> None:
        info = parse_connect_message(frame)
        if info.pubkey or info.sig:
            try:
                verify_connect_signature(frame)
            except BadSignature as exc:
                raise ProtocolError(f"bad signature: {exc}", code=CLOSE_BAD_SIGNATURE) from None
        await self.guard.claim_identity(info)
        self.process_id = await registry.ensure()
        async with live_pool().adding():
            try:
                self.worker_id, self.connection_id = await _register(
                    process_id=self.process_id, channel_name=self.channel_name, info=info, address=self.guard.ip or ""
                )
            except services.ProcessGone:
                await registry.forget(self.process_id)
                raise ProtocolError("coordinator restarting, connect again", code=CLOSE_RESTARTING) from None
            await live_pool().add(
                connection_id=self.connection_id, channel_name=self.channel_name, worker_id=self.worker_id,
                facts=services.facts_of(info, worker_id=self.worker_id, address=self.guard.ip or ""),
                current_model=info.models[0] if info.models else "", models=tuple(info.models),
            )
        self.connect_timer.cancel()
        observe.worker_connected(worker_id=self.worker_id, connection_id=self.connection_id, info=info, ip=self.guard.ip)
        await self.channel_layer.group_add(events.process_group(self.process_id), self.channel_name)
        await self.hand_off(job_id="")  # someone may be waiting for just this worker

    async def relay(self, frame: dict, text: str | None) -> None:
        job = self.job
        if job is None:
            if "busy" in frame and len(frame) == 1:
                await live_pool().set_away(connection_id=self.connection_id, away=bool(frame["busy"]))
            else:
                # A late frame of a finished job: never delivered to a later one.
                await database_sync_to_async(services.count_frames)(connection_id=self.connection_id, worker_id=self.worker_id, stray=1)
            return
        last = job.is_last(frame)
        if not job.abandoned and not mailbox.deliver(job.reply_channel, events.local_frame(job_id=job.job_id, frame=frame, last=last)):
            # Another process's request: the frame crosses the layer as the worker's text.
            text = text if text is not None else json.dumps(frame)
            await self._reply(job, events.frame(job_id=job.job_id, text=text, last=last))
        if last:
            await self.finish_job()

    async def finish_job(self) -> None:
        job, self.job = self.job, None
        if job.timer:
            job.timer.cancel()
        await self.hand_off(job_id=job.job_id)

    async def hand_off(self, *, job_id: str) -> None:
        """Free the connection, or hand it to the oldest request waiting for it."""
        try:
            handed = await live_pool().release_or_hand_off(connection_id=self.connection_id, job_id=job_id)
        except (DatabaseError, PoolDown):
            # The database (or Redis) is down: keep the worker, and free it once it is back.
            log.warning("could not free a connection; retrying", exc_info=True)
            self.retry_timer = asyncio.create_task(self._hand_off_later(job_id))
            return
        if handed is None:
            return
        reply_channel, message = handed
        self.expected_job = message["job_id"]
        if self.expected_timer:
            self.expected_timer.cancel()
        self.expected_timer = asyncio.create_task(self._release_if_unclaimed(message["job_id"]))
        await self._reply_to(reply_channel, events.claimed(**message))

    async def _hand_off_later(self, job_id: str) -> None:
        await asyncio.sleep(RELEASE_RETRY_PAUSE)
        if self.connection_id is not None and self.job is None:
            await self.hand_off(job_id=job_id)

    async def _release_if_unclaimed(self, job_id: str) -> None:
        """A waiter that was handed this connection but died never sends its job."""
        await asyncio.sleep(HAND_OFF_TIMEOUT)
        if self.job is None and self.expected_job == job_id and self.connection_id is not None:
            await self.hand_off(job_id=job_id)

    async def worker_job(self, event: dict) -> None:
        """A claimed job: forward it to the worker."""
        if self.expected_timer and self.expected_job == event["job_id"]:
            self.expected_timer.cancel()
        if self.job is not None or self.connection_id is None:
            await self._reply_to(event["reply_channel"], events.gone(job_id=event["job_id"], reason="connection not ready"))
            return
        self.job = ActiveJob(event["job_id"], event["reply_channel"], event["ends_with_marker"])
        live_pool().note_job(connection_id=self.connection_id)
        # Whatever the caller does, a job that outlives its own deadline plus the
        # drain allowance means a stuck worker: drop it.
        self.job.timer = asyncio.create_task(
            self._close_after(event["max_seconds"] + settings.DRAIN_TIMEOUT, "job took too long", job_id=event["job_id"])
        )
        await self.send(text_data=job_frame(openai_url=event["openai_url"], openai_req=event["openai_req"]))

    async def worker_cancel(self, event: dict) -> None:
        """The caller left: keep the connection busy until the worker's last frame."""
        if self.job is not None and self.job.job_id == event["job_id"]:
            self.job.abandoned = True
            self.job.timer.cancel()
            self.job.timer = asyncio.create_task(
                self._close_after(settings.DRAIN_TIMEOUT, "abandoned job never finished", job_id=self.job.job_id)
            )

    async def worker_audit(self, event: dict) -> None:
        """The heartbeat found our row busy for a while: free it if the job never came."""
        job_id = event["job_id"]
        running = self.job is not None and self.job.job_id == job_id
        if not running and self.expected_job != job_id and self.connection_id is not None:
            log.warning("freeing a connection claimed for a job that never arrived")
            await self.hand_off(job_id=job_id)

    async def worker_close(self, event: dict) -> None:
        await self.close(code=event["code"], reason=event["reason"])

    async def disconnect(self, code: int) -> None:
        for timer in (self.connect_timer, self.expected_timer, self.retry_timer):
            if timer:
                timer.cancel()
        if self.job and self.job.timer:
            self.job.timer.cancel()
        if self.connection_id is None:
            return
        await self.channel_layer.group_discard(events.process_group(self.process_id), self.channel_name)
        # The pool knows the job even if its message had not reached us yet.
        job_id, reply_channel = await live_pool().remove(connection_id=self.connection_id)
        observe.worker_disconnected(self.guard, worker_id=self.worker_id, connection_id=self.connection_id, code=code)
        self.connection_id = None
        if job_id and reply_channel:
            await self._reply_to(reply_channel, events.gone(job_id=job_id, reason="the worker disconnected"))

    async def _reply(self, job: ActiveJob, message: dict) -> None:
        if not await self._reply_to(job.reply_channel, message):
            job.abandoned = True

    async def _reply_to(self, channel: str, message: dict) -> bool:
        if mailbox.deliver(channel, message):  # a request of this process
            return True
        try:
            await self.channel_layer.send(channel, message)
            return True
        except ChannelFull:
            log.warning("reply channel full; dropping the rest of the job's frames")
            return False
        except Exception:  # channel layer down: the caller will time out
            log.warning("could not reach a reply channel", exc_info=True)
            return False

    async def _close_after(self, seconds: float, reason: str, *, job_id: str | None = None) -> None:
        await asyncio.sleep(seconds)
        if job_id is None or (self.job is not None and self.job.job_id == job_id):
            await self.close(code=CLOSE_TIMEOUT, reason=reason)
