"""A consumer base that survives channel-layer outages and never leaves a ghost row.

Channels ends a consumer whose channel-layer receive raises, and then no
`disconnect()` runs: with Redis restarting, every worker socket of a process
would die and leave its Connection row behind, free and pointing at a channel
nobody reads. Here the receive retries until the layer is back, and `disconnect()`
runs however the consumer ends. The process also keeps the set of its live
consumer channels, so its heartbeat can delete rows that outlived them.

It also dispatches without Channels' `aclose_old_connections()` before every
message: that is a thread hop per worker frame and per channel message (a
32-chunk stream paid 60-odd), while every database call of the consumer runs
through `database_sync_to_async` or `on_db_threads`, which close stale
connections themselves on the thread that holds them.

A consumer's end never cancels a channel-layer receive in flight. channels-redis
pops every "specific." channel of a process from one Redis key, with whichever
receive() holds its lock doing the pop for all of them, and a receive cancelled
between the pop and its backup write (or while the popped reply is on the wire:
redis-py drops the connection) loses the message, whoever it was for: a stream
frame crossing from another process, say, and that stream ends with [DONE] and a
token missing. Channels cancels the consumer's receive whenever the consumer
ends (a worker disconnecting, the very moment its streams are being continued
elsewhere). So the receive runs in a task of its own that the consumer's end
leaves running, and a message sent to the ended consumer's own channel lets it
finish (workers/mailbox.py explains the same hazard for requests).
"""

import asyncio
import logging

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer

from .liveness import registry
from .protocol import CLOSE_INTERNAL_ERROR

log = logging.getLogger(__name__)

# Pause between attempts to read the channel layer while it is down.
LAYER_RETRY_PAUSE = 0.5


# The message that lets an ended consumer's last receive finish; nobody handles it.
RECEIVE_DONE = {"type": "consumer.ended"}

# Receives left running by consumers that ended (referenced until they finish).
_left_running: set[asyncio.Task] = set()


def _retrying(receive, left: list[asyncio.Task] | None = None):
    """`receive`, retried while the layer is down. Cancelling the returned
    coroutine does not cancel the receive itself: it goes on in its own task
    (appended to `left`) until a message comes, so no message it already popped
    for another channel of the process is lost."""

    async def receive_until_it_works():
        while True:
            inner = asyncio.ensure_future(receive())
            try:
                return await asyncio.shield(inner)
            except asyncio.CancelledError:
                if not inner.done():
                    _left_running.add(inner)
                    inner.add_done_callback(_finished_left)
                    if left is not None:
                        left.append(inner)
                raise
            except Exception:
                log.warning("channel layer receive failed; retrying", exc_info=True)
                await asyncio.sleep(LAYER_RETRY_PAUSE)

    return receive_until_it_works


def _finished_left(task: asyncio.Task) -> None:
    _left_running.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: a layer failure after the consumer ended is nobody's


class ResilientConsumer(AsyncWebsocketConsumer):
    disconnected = False

    @property
    def channel_receive(self):
        return self._channel_receive

    @channel_receive.setter
    def channel_receive(self, receive) -> None:  # set by channels in __call__
        self._left_receives: list[asyncio.Task] = []
        self._channel_receive = _retrying(receive, self._left_receives)

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            registry.live_channels.discard(getattr(self, "channel_name", ""))
            if not self.disconnected:
                try:
                    await self.disconnect(CLOSE_INTERNAL_ERROR)
                except Exception:
                    log.exception("cleanup after a consumer failure failed")
            await self._finish_left_receives()

    async def _finish_left_receives(self) -> None:
        """Let the receive this consumer's end left running finish: it waits for
        a message to the consumer's own channel, so send it one."""
        if any(not task.done() for task in getattr(self, "_left_receives", ())):
            try:
                await self.channel_layer.send(self.channel_name, RECEIVE_DONE)
            except Exception:  # the layer is down: the receive ends with it
                log.warning("could not end a finished consumer's receive", exc_info=True)

    async def websocket_connect(self, message) -> None:
        registry.live_channels.add(self.channel_name)
        await super().websocket_connect(message)

    async def websocket_disconnect(self, message) -> None:
        self.disconnected = True
        await super().websocket_disconnect(message)
