"""The embedded default's channel layer: Channels' in-memory layer, with its
expiry sweep run at most once a second.

Channels' InMemoryChannelLayer walks every channel and every group member
looking for expired messages on each `receive()`. Every worker socket has a
consumer waiting in `receive()`, so with thousands of idle workers connected
each job message, each stream chunk, walked thousands of queues (bench: c=16
throughput fell from 154 to 66 req/s with 3,000 idle workers). Messages expire
after a minute; finding them up to a second late changes nothing.
"""

import time

from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer

SWEEP_INTERVAL = 1.0


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    _next_sweep = 0.0

    def _clean_expired(self):
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        super()._clean_expired()
