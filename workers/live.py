"""This process's live pool, chosen once: in memory on the embedded default
(pool.py), in Redis on a cluster (redis_pool.py). Nothing else asks which."""

from django.conf import settings

from .pool import MemoryPool
from .redis_pool import RedisPool

_pool: MemoryPool | RedisPool | None = None


def live_pool() -> MemoryPool | RedisPool:
    """Built on first use: the Redis pool's clients belong to the running event loop."""
    global _pool
    if _pool is None:
        _pool = RedisPool() if settings.REDIS_URL else MemoryPool()
    return _pool
