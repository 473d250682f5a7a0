"""The caller's side of a job: claim a connection (waiting in line), send the job
to the consumer that holds the socket, and read the worker's frames from this
request's own reply channel, with timeouts.
"""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from . import events
from .services import Claim, Need, claim_connection

# While waiting in line a request is woken by every freed connection; this poll
# is only the safety net for a wake lost with a dying process.
QUEUE_POLL_INTERVAL = 1.0


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

    def __init__(self, *, claim: Claim, job_id: str, reply_channel: str, queue_seconds: float):
        self.claim = claim
        self.job_id = job_id
        self.reply_channel = reply_channel
        self.queue_seconds = queue_seconds
        self.finished = False
        self.started_at = time.monotonic()
        self.first_frame_at: float | None = None

    async def send(self, *, openai_url: str, openai_req: dict[str, Any], ends_with_marker: bool, max_seconds: float) -> None:
        self.started_at = time.monotonic()
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
        layer = get_channel_layer()
        deadline = self.started_at + timeouts.total
        while not self.finished:
            first = self.first_frame_at is None
            wait = min(timeouts.first if first else timeouts.gap, deadline - time.monotonic())
            message = await self._receive(layer, wait, first=first)
            if message.get("job_id") != self.job_id:
                continue  # a queue wake, or a frame of an earlier attempt
            if message["type"] == events.JOB_GONE:
                self.finished = True
                raise WorkerGone(message["reason"])
            self.finished = message["last"]
            if first:
                self.first_frame_at = time.monotonic()
            yield json.loads(message["text"])

    async def _receive(self, layer, wait: float, *, first: bool) -> dict[str, Any]:
        what = "first reply" if first else "next frame"
        if wait <= 0:
            raise FrameTimeout(f"the worker did not send its {what} in time", first=first)
        try:
            return await asyncio.wait_for(layer.receive(self.reply_channel), wait)
        except asyncio.TimeoutError:
            raise FrameTimeout(f"the worker did not send its {what} in time", first=first) from None

    async def abandon(self) -> None:
        """The caller is done early: the consumer drains the job and relays nothing more."""
        if not self.finished:
            self.finished = True
            await get_channel_layer().send(self.claim.channel_name, events.cancel(job_id=self.job_id))


async def claim_job(*, need: Need, queue_timeout: float) -> JobHandle:
    """Claim a connection for `need`, waiting in line up to `queue_timeout` seconds.

    Raises services.NoWorkerFits at once if no connected worker could serve it,
    AllBusy if the ones that could stayed busy past the deadline.
    """
    layer = get_channel_layer()
    # The default prefix matters: channels-redis pops all of a process's
    # "specific." channels from one Redis key under one lock; a custom prefix
    # would be a second key that nobody pops while a consumer holds the lock.
    reply_channel = await layer.new_channel()
    job_id = uuid.uuid4().hex
    claim_once = database_sync_to_async(claim_connection)
    started = time.monotonic()
    deadline = started + queue_timeout
    waiting = False
    try:
        while True:
            claim = await claim_once(need=need, job_id=job_id, reply_channel=reply_channel)
            if claim is not None:
                return JobHandle(claim=claim, job_id=job_id, reply_channel=reply_channel, queue_seconds=time.monotonic() - started)
            if not waiting:
                # Join before waiting, then claim once more: a connection freed
                # between the failed claim and the join would otherwise be missed.
                await layer.group_add(events.WAITERS_GROUP, reply_channel)
                waiting = True
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AllBusy("every worker that can serve this request stayed busy")
            try:
                await asyncio.wait_for(layer.receive(reply_channel), min(remaining, QUEUE_POLL_INTERVAL))
            except asyncio.TimeoutError:
                pass
    finally:
        if waiting:
            await layer.group_discard(events.WAITERS_GROUP, reply_channel)
