"""One reply channel per process, read by one task that is never cancelled.

Requests do not read the channel layer themselves: a request waits for its
replies with a timeout, and cancelling a layer receive is only safe for the
channel being received (queenbee_site/layers.py makes it so on Redis, where
channels-redis alone could lose a message popped for *another* channel of the
process). So a single reader owns the process's reply channel and sorts
messages by job id into asyncio queues, where waiting with a timeout is safe.
Messages for a job nobody waits for (any more) are dropped.

A consumer replying to a request of its own process skips the channel layer:
`deliver()` puts the message straight into the job's queue. A stream's frames
then cost no layer round trip (no Redis, or no copy in the in-memory layer), and
order holds, since all of one job's replies come from the one consumer holding
its worker's socket, by one path.

The reader is a task of the process runtime (workers/apps.py): it starts when
the process serves, before any request can dispatch a job.
"""

import asyncio
from typing import Any

from channels.layers import get_channel_layer

from runtime.loops import retried

# After a failed receive (Redis restarting), wait this long before trying again.
RETRY_PAUSE = 0.5


class Mailbox:
    def __init__(self) -> None:
        self.channel_name = ""
        self._queues: dict[str, asyncio.Queue] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Take a reply channel and start reading it (the process runtime calls this)."""
        self.channel_name = await get_channel_layer().new_channel()
        self._task = asyncio.get_running_loop().create_task(self._read(), name="reply-mailbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def reply_channel(self) -> str:
        """The process's reply channel; only once the reader runs."""
        if self._task is None or self._task.done():
            raise RuntimeError("the reply mailbox is not running: the process runtime has not started")
        return self.channel_name

    def open(self, job_id: str) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue()
        self._queues[job_id] = queue
        return queue

    def close(self, job_id: str) -> None:
        self._queues.pop(job_id, None)

    def deliver(self, channel: str, message: dict[str, Any]) -> bool:
        """Deliver a message for this process's own reply channel in process;
        False for any other channel (it goes over the channel layer)."""
        if not channel or channel != self.channel_name:
            return False
        self._route(message)
        return True

    def _route(self, message: dict[str, Any]) -> None:
        queue = self._queues.get(message.get("job_id", ""))
        if queue is not None:
            queue.put_nowait(message)

    async def _read(self) -> None:
        layer = get_channel_layer()
        while True:
            self._route(await retried(lambda: layer.receive(self.channel_name), pause=RETRY_PAUSE, what="reply channel receive"))


mailbox = Mailbox()
