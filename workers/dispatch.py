"""The caller's side of a job: claim a connection (waiting in line), send the job
to the consumer that holds the socket, and read the worker's frames from this
request's own reply channel, with timeouts.
"""

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer

from runtime.process import process

from . import events
from .live import live_pool
from .liveness import registry
from .mailbox import mailbox
from .pool import PoolDown
from .services import Claim, Need, NoWorkerFits

log = logging.getLogger(__name__)

# A waiting request is handed a connection by the consumer that frees it; it also
# polls this often, the safety net for a hand-off lost with a dying process.
QUEUE_POLL_INTERVAL = 1.0
# The first poll comes soon: a connection freed between the failed claim and
# joining the line found nobody waiting.
FIRST_POLL = 0.05
# A hand-off already under way when the waiter tried to leave arrives within
# milliseconds; this long means its sender died.
HAND_OFF_GRACE = 5.0


# How the channel layer says it cannot carry a message: Redis unreachable or too
# slow, or the worker's channel full. Anything else a send raises is a bug (a
# message that is not JSON-safe, a malformed channel name) and is not hidden.
LAYER_FAILURES = (ChannelFull, redis.ConnectionError, redis.TimeoutError)


class LayerDown(Exception):
    """The channel layer could not carry the job to its worker."""


class AllBusy(Exception):
    """Every worker that fits stayed busy until the queue deadline."""


class WorkerGone(Exception):
    """The worker's socket closed (or was dropped) before the job's last frame."""


class FrameTimeout(Exception):
    """No frame arrived in time. `first` tells whether any frame had arrived."""

    def __init__(self, message: str, *, first: bool):
        super().__init__(message)
        self.first = first


@dataclass(frozen=True)
class Timeouts:
    first: float  # until the first frame (model download and load included)
    gap: float  # between two frames of a stream
    total: float  # the whole job


class JobHandle:
    """One job on one claimed connection."""

    def __init__(self, *, claim: Claim, job_id: str, reply_channel: str, inbox: asyncio.Queue, queue_seconds: float):
        self.claim = claim
        self.job_id = job_id
        self.reply_channel = reply_channel
        self.inbox = inbox
        self.queue_seconds = queue_seconds
        self.finished = False
        self.closed = False
        registry.active_jobs += 1
        self.started_at = time.monotonic()
        self.first_frame_at: float | None = None

    async def send(self, *, openai_url: str, openai_req: dict[str, Any], ends_with_marker: bool, max_seconds: float) -> None:
        """Send the job to the consumer. If that fails, give the connection back
        (its consumer never hears of the job), and raise LayerDown if the channel
        layer is down, or the error itself (a bug) otherwise."""
        self.started_at = time.monotonic()
        try:
            await self._send_job(openai_url, openai_req, ends_with_marker, max_seconds)
        except Exception as exc:
            self.finished = True
            await self.abandon()
            await live_pool().release_or_hand_off(connection_id=self.claim.connection_id, job_id=self.job_id)
            if isinstance(exc, LAYER_FAILURES):
                raise LayerDown(str(exc)) from exc
            raise

    async def _send_job(self, openai_url: str, openai_req: dict[str, Any], ends_with_marker: bool, max_seconds: float) -> None:
        await get_channel_layer().send(
            self.claim.channel_name,
            events.job(
                job_id=self.job_id,
                reply_channel=self.reply_channel,
                openai_url=openai_url,
                openai_req=openai_req,
                ends_with_marker=ends_with_marker,
                max_seconds=max_seconds,
            ),
        )

    async def frames(self, timeouts: Timeouts) -> AsyncIterator[dict[str, Any]]:
        """The worker's frames, in order, until the job's last one."""
        deadline = self.started_at + timeouts.total
        while not self.finished:
            first = self.first_frame_at is None
            wait = min(timeouts.first if first else timeouts.gap, deadline - time.monotonic())
            message = await self._receive(wait, first=first)
            if message["type"] == events.JOB_GONE:
                self.finished = True
                raise WorkerGone(message["reason"])
            self.finished = message["last"]
            if first:
                self.first_frame_at = time.monotonic()
            # In process the consumer's decoded frame; from another process its text.
            yield message["frame"] if "frame" in message else json.loads(message["text"])

    async def _receive(self, wait: float, *, first: bool) -> dict[str, Any]:
        what = "first reply" if first else "next frame"
        if wait <= 0:
            raise FrameTimeout(f"the worker did not send its {what} in time", first=first)
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that
            # arrives as a frame does, and a caller who left kept its stream running.
            async with asyncio.timeout(wait):
                return await self.inbox.get()
        except TimeoutError:
            raise FrameTimeout(f"the worker did not send its {what} in time", first=first) from None

    async def abandon(self) -> None:
        """The caller is done: the consumer drains the job (if still running) and
        relays nothing more. Always called once the caller stops reading."""
        if not self.closed:
            self.closed = True
            registry.active_jobs -= 1
            mailbox.close(self.job_id)
        if not self.finished:
            self.finished = True
            await get_channel_layer().send(self.claim.channel_name, events.cancel(job_id=self.job_id))


async def claim_job(*, need: Need, queue_timeout: float) -> JobHandle:
    """Claim a connection for `need`, waiting in line up to `queue_timeout` seconds.

    Raises services.NoWorkerFits at once if no connected worker could serve it,
    AllBusy if the ones that could stayed busy past the deadline.
    """
    reply_channel = mailbox.reply_channel()
    job_id = uuid.uuid4().hex
    inbox = mailbox.open(job_id)
    started = time.monotonic()

    def handle(claim: Claim) -> JobHandle:
        return JobHandle(claim=claim, job_id=job_id, reply_channel=reply_channel, inbox=inbox, queue_seconds=time.monotonic() - started)

    try:
        return await _claim_or_wait(need, job_id, reply_channel, inbox, started, queue_timeout, handle)
    except BaseException:
        mailbox.close(job_id)
        # The caller left (or failed) while waiting: leave the line, in a task of
        # its own since this one may be cancelled.
        asyncio.ensure_future(_leave_quietly(job_id))
        raise


async def _leave_quietly(job_id: str) -> None:
    try:
        await _leave(job_id=job_id)
    except Exception:  # the heartbeat sweeps it after its deadline
        log.warning("could not leave the waiting line", exc_info=True)


async def _claim_or_wait(need, job_id, reply_channel, inbox, started, queue_timeout, handle) -> JobHandle:

    claim = await _claim(need=need, job_id=job_id, reply_channel=reply_channel)
    if claim is not None:
        return handle(claim)
    deadline = started + queue_timeout
    position = time.time()
    wait = FIRST_POLL  # a connection may have freed between the claim and joining
    while True:
        await _enqueue(job_id=job_id, reply_channel=reply_channel, need=need, position=position, deadline_seconds=max(deadline - time.monotonic(), 0) + 1)
        claim = await _wait_for_hand_off(inbox, min(wait, max(deadline - time.monotonic(), 0)))
        if claim is not None:
            return handle(claim)
        if not await _leave(job_id=job_id):
            # Too late to leave: a consumer is handing us its connection.
            claim = await _wait_for_hand_off(inbox, HAND_OFF_GRACE)
            if claim is not None:
                return handle(claim)
            raise AllBusy("a worker was handed to this request but never confirmed")
        claim = await _claim(need=need, job_id=job_id, reply_channel=reply_channel)
        if claim is not None:
            return handle(claim)
        if time.monotonic() >= deadline:
            raise AllBusy("every worker that can serve this request stayed busy")
        wait = QUEUE_POLL_INTERVAL


async def _wait_for_hand_off(inbox: asyncio.Queue, seconds: float) -> Claim | None:
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            async with asyncio.timeout(remaining):  # not wait_for: see JobHandle._receive
                message = await inbox.get()
        except TimeoutError:
            return None
        if message.get("type") == events.QUEUE_CLAIMED:
            return Claim(**message["claim"])
    return None


async def _claim(*, need: Need, job_id: str, reply_channel: str) -> Claim | None:
    if process.stopping:
        raise NoWorkerFits("This coordinator is shutting down: no worker can serve this request here.")
    try:
        return await live_pool().claim(need=need, job_id=job_id, reply_channel=reply_channel)
    except PoolDown as exc:
        raise LayerDown(str(exc)) from exc


async def any_worker_fits(*, need: Need) -> bool:
    """Whether any live connection could serve `need`, free or not (routing names
    a missing feature by it). False when the live pool cannot be reached."""
    try:
        return await live_pool().fits_any(need=need)
    except PoolDown:
        return False


async def largest_context(*, need: Need) -> int | None:
    """The largest context window a live connection that could serve `need`
    (whatever its context) announced; None when none did or the live pool cannot
    be reached (routing names a too-long request by it)."""
    try:
        return await live_pool().largest_context(need=need)
    except PoolDown:
        return None


async def _enqueue(**kwargs) -> None:
    try:
        await live_pool().enqueue(**kwargs)
    except PoolDown as exc:
        raise LayerDown(str(exc)) from exc


async def _leave(*, job_id: str) -> bool:
    try:
        return await live_pool().leave(job_id=job_id)
    except PoolDown as exc:
        raise LayerDown(str(exc)) from exc
