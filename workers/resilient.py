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
"""

import logging

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer

from runtime.loops import retried

from .liveness import registry
from .protocol import CLOSE_INTERNAL_ERROR

log = logging.getLogger(__name__)

# Pause between attempts to read the channel layer while it is down.
LAYER_RETRY_PAUSE = 0.5


def _retrying(receive):
    async def receive_until_it_works():
        return await retried(receive, pause=LAYER_RETRY_PAUSE, what="channel layer receive")

    return receive_until_it_works


class ResilientConsumer(AsyncWebsocketConsumer):
    disconnected = False

    @property
    def channel_receive(self):
        return self._channel_receive

    @channel_receive.setter
    def channel_receive(self, receive) -> None:  # set by channels in __call__
        self._channel_receive = _retrying(receive)

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

    async def websocket_connect(self, message) -> None:
        registry.live_channels.add(self.channel_name)
        await super().websocket_connect(message)

    async def websocket_disconnect(self, message) -> None:
        self.disconnected = True
        await super().websocket_disconnect(message)
