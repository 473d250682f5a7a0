"""Queenbee's channel layers: Channels' own, with two hot spots fixed.

InMemoryChannelLayer (the embedded default) runs its expiry sweep at most once
a second. RedisChannelLayer (a cluster) sends a message in one round trip, and
one reader per process pops its process channels, so that no caller's
cancelled receive can lose a message meant for another.

Channels' InMemoryChannelLayer walks every channel and every group member
looking for expired messages on each `receive()`. Every worker socket has a
consumer waiting in `receive()`, so with thousands of idle workers connected
each job message, each stream chunk, walked thousands of queues (bench: c=16
throughput fell from 154 to 66 req/s with 3,000 idle workers). Messages expire
after a minute; finding them up to a second late changes nothing.
"""

import asyncio
import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer
from channels_redis.core import BoundedQueue
from channels_redis.core import RedisChannelLayer as ChannelsRedisChannelLayer

from runtime.loops import retried

SWEEP_INTERVAL = 1.0

# After a failed read of the process's channels (Redis restarting), wait this long.
READ_RETRY_PAUSE = 0.5


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    _next_sweep = 0.0

    def _clean_expired(self):
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        super()._clean_expired()


# channels-redis's send, as one script: drop expired messages, refuse a full
# channel, add the message, renew the key's expiry. The same steps, atomic.
SEND_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1])
if redis.call('ZCOUNT', KEYS[1], '-inf', '+inf') >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class RedisChannelLayer(ChannelsRedisChannelLayer):
    """channels-redis's layer, sending in one round trip instead of four, and
    receiving a process's channels through one reader nobody cancels.

    channels-redis 4.3 sends with four commands awaited one after the other
    (ZREMRANGEBYSCORE, ZCOUNT, ZADD, EXPIRE); on a cluster every job and every
    frame for another process pays them (py-spy: the layer's send was 11% of a
    cluster process). This runs the same four as one script.

    All "specific." channels of a process share one Redis key, and channels-redis
    lets whichever `receive()` holds its lock pop for all of them. Channels
    cancels a consumer's receive when the consumer ends (a worker disconnecting),
    and a receive cancelled with a popped message not yet handed on loses it,
    whoever it was for: a stream frame from another process on its way to a
    request, which then ends with [DONE] and a token missing (the soak, with
    workers killed mid-stream). Here one task per process pops the key and
    sorts messages into per-channel queues; `receive()` only waits on its
    channel's queue, which a cancellation cannot lose anything from but that
    channel's own messages. Plain channels and groups are channels-redis's own.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._inboxes: dict[str, BoundedQueue] = {}
        self._reader: asyncio.Task | None = None

    async def new_channel(self, prefix="specific"):
        channel = await super().new_channel(prefix)
        self._inbox(channel)  # from now on, what is sent to it waits for its receive
        return channel

    async def receive(self, channel):
        if "!" not in channel:
            return await super().receive(channel)
        assert self.require_valid_channel_name(channel)
        assert self.non_local_name(channel).endswith(self.client_prefix + "!"), "Wrong client prefix"
        self._read_in_background()  # first: on a new event loop it replaces the queues
        inbox = self._inbox(channel)
        try:
            return await inbox.get()
        except asyncio.CancelledError:
            # Its consumer has ended: what else comes for the channel is nobody's.
            if self._inboxes.get(channel) is inbox:
                del self._inboxes[channel]
            raise

    def _inbox(self, channel: str) -> BoundedQueue:
        if (inbox := self._inboxes.get(channel)) is None:
            inbox = self._inboxes[channel] = BoundedQueue(self.get_capacity(channel))
        return inbox

    def _read_in_background(self) -> None:
        loop = asyncio.get_running_loop()
        if self._reader is not None and not self._reader.done() and self._reader.get_loop() is loop:
            return
        if self._reader is not None and self._reader.get_loop() is not loop:
            # A new event loop (a test's): the old loop's queues cannot be awaited here.
            self._inboxes = {name: BoundedQueue(queue.maxsize) for name, queue in self._inboxes.items()}
        self._reader = loop.create_task(self._read(), name="channel-layer-reader")

    async def _read(self) -> None:
        process_key = f"specific.{self.client_prefix}!"
        while True:
            channel, message = await retried(
                lambda: self.receive_single(process_key), pause=READ_RETRY_PAUSE, what="reading this process's channels",
            )
            for name in channel if isinstance(channel, list) else [channel]:
                inbox = self._inboxes.get(name)
                if inbox is not None:  # else its receiver has ended
                    inbox.put_nowait(message)

    async def close_pools(self):
        if self._reader is not None and self._reader.get_loop() is asyncio.get_running_loop():
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self._reader = None
        await super().close_pools()

    async def send(self, channel, message):
        assert isinstance(message, dict), "message is not a dict"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        assert "__asgi_channel__" not in message
        channel_non_local_name = channel
        if "!" in channel:  # process-local channel: the reader sorts by the full name
            message = {**message, "__asgi_channel__": channel}
            channel_non_local_name = self.non_local_name(channel)
        index = self.consistent_hash(channel) if "!" in channel else next(self._send_index_generator)
        sent = await self.connection(index).eval(
            SEND_SCRIPT, 1, self.prefix + channel_non_local_name,
            int(time.time()) - int(self.expiry), self.get_capacity(channel), time.time(),
            self.serialize(message), int(self.expiry),
        )
        if not sent:
            raise ChannelFull()
