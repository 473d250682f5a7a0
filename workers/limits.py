"""Limits that keep one hostile worker, or one address, from hurting the others.

Strangers connect to /worker with no sign-up, so each socket and each address
gets a budget, and breaking it closes the socket with a reason saying which:

- frames per socket: a token bucket (WORKER_FRAME_RATE, WORKER_FRAME_BURST).
  A flood the consumer cannot even keep up with is stopped earlier, as frames
  arrive, by the daphne backlog guard (queenbee_site/daphne_compat.py);
- new sockets per client address and minute (WORKER_CONNECTS_PER_MINUTE),
  counted in the cache, which is Redis in a cluster, so every process shares
  one count;
- one signed identity per address at a time: the connect message carries no
  challenge, so anyone who saw one can replay it; a replay from another address
  while the identity is connected is refused.

Frame size, depth and shape are checked by `protocol.decode_frame`.

The cache is called through `runtime.caching` (Django's async cache methods
hopped to the one sync thread four times per connect, a tenth of its CPU).
"""

import hashlib
import logging
import time
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.cache import cache

from runtime import client_ip, observe
from runtime.caching import count, in_cache

from .liveness import live_connections
from .protocol import CLOSE_IDENTITY_IN_USE, CLOSE_RATE_LIMITED, ConnectInfo, ProtocolError

log = logging.getLogger(__name__)

# How long the address of a signed identity is remembered. Only consulted while
# that identity has a live connection, so it needs to outlast a connection, not
# to be exact; bounded so abandoned identities leave the cache.
IDENTITY_ADDRESS_SECONDS = 30 * 24 * 3600


@dataclass
class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up. Pure, no clock of its own."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    stamp: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> bool:
        if self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class SocketLimits:
    """One worker socket's address and budgets. Built when the socket opens."""

    def __init__(self, scope: dict):
        self.ip = client_ip.from_scope(scope)
        self.opened_at = time.monotonic()
        self.frames = TokenBucket(settings.WORKER_FRAME_RATE, settings.WORKER_FRAME_BURST)
        self.refused: ProtocolError | None = None

    async def refusal(self) -> ProtocolError | None:
        """Why this new socket must be closed at once (too many from its address), or None."""
        allowed = settings.WORKER_CONNECTS_PER_MINUTE
        if not allowed:
            return None
        window = int(time.time() // 60)
        key = f"queenbee:worker-connects:{self.ip}:{window}"
        try:
            connects = await in_cache(count, key, 120)
        except Exception:  # the cache is down: admit rather than lock every worker out
            log.warning("worker connection rate check failed", exc_info=True)
            return None
        if connects > allowed:
            return ProtocolError(
                f"too many connections from your address (over {allowed} a minute); retry later",
                code=CLOSE_RATE_LIMITED,
            )
        return None

    def first_refusal(self, exc: ProtocolError, *, registered: bool) -> bool:
        """Record that the socket is being closed; False if it already was."""
        if self.refused is not None:
            return False
        self.refused = exc
        observe.worker_refused(code=exc.code, reason=exc.reason, ip=self.ip, registered=registered)
        return True

    def count_frame(self) -> None:
        """Spend one frame of the socket's budget; a flood closes the socket.

        Once the socket is being closed, every frame still queued is refused too.
        """
        if self.refused is not None:
            raise self.refused
        if not self.frames.take(time.monotonic()):
            raise ProtocolError(
                f"too many frames (over {settings.WORKER_FRAME_RATE:g} a second)", code=CLOSE_RATE_LIMITED, fatal=True
            )

    async def claim_identity(self, info: ConnectInfo) -> None:
        """Refuse a signed identity that is connected right now from another address."""
        if not info.identity:
            return
        key = "queenbee:worker-address:" + hashlib.sha256(info.identity.encode()).hexdigest()
        try:
            previous = await in_cache(cache.get, key)
            if previous and previous != self.ip and await _is_connected(info.identity):
                raise ProtocolError("this worker identity is already connected from another address", code=CLOSE_IDENTITY_IN_USE)
            await in_cache(cache.set, key, self.ip, IDENTITY_ADDRESS_SECONDS)
        except ProtocolError:
            raise
        except Exception:  # the cache is down: admit rather than lock every worker out
            log.warning("worker identity address check failed", exc_info=True)


@database_sync_to_async
def _is_connected(identity: str) -> bool:
    return live_connections().filter(worker__identity=identity).exists()
