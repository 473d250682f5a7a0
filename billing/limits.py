"""Per-key rate limits, shared by every process through the Django cache.

With REDIS_URL the cache is Redis, whose INCR is atomic, so all processes count
together; the embedded default has one process and its in-memory cache.
"""

import time

from django.core.cache import cache

from api.errors import RateLimited
from runtime.caching import count, in_cache

# A stream counter outlives any stream (TOTAL_TIMEOUT is 10 minutes by default):
# if a process dies holding slots, they come back when the key expires.
STREAM_SLOT_SECONDS = 3600


async def count_request(*, key: str, per_minute: int) -> None:
    """Count one request in this minute's window; 429 over `per_minute`."""
    if per_minute <= 0:
        return
    now = time.time()
    window = f"qb:rpm:{key}:{int(now // 60)}"
    if await in_cache(count, window, 90) > per_minute:
        raise RateLimited(
            f"Rate limit reached: {per_minute} requests per minute for this API key.",
            retry_after=max(1, 60 - int(now % 60)),
        )


async def take_stream_slot(*, key: str, limit: int) -> str | None:
    """Hold one of the key's concurrent streams; returns the counter to release."""
    if limit <= 0:
        return None
    counter = f"qb:streams:{key}"
    if await in_cache(count, counter, STREAM_SLOT_SECONDS) > limit:
        await release_stream_slot(counter)
        raise RateLimited(f"Rate limit reached: {limit} concurrent streams for this API key.", retry_after=1)
    return counter


async def release_stream_slot(counter: str | None) -> None:
    if counter is not None:
        await in_cache(_give_back, counter)


def _give_back(counter: str) -> None:
    try:
        cache.decr(counter)
    except ValueError:  # expired meanwhile: nothing to give back
        pass
