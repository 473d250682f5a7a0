"""Caching helpers shared by the request path.

`Expiring`: a per-process map whose entries expire, for answers the hot path
must not fetch on every request (a key's lookup, its account's facts, the
billing backend's `check`). Plain dict operations, so threads may share one.

`in_cache` and `count`: calls of Django's cache from async code. Django's async
cache methods hop to the one sync thread for every call; a cache in this
process's memory (runtime/backends.py: `local_cache`) is called directly, and
Redis from a pool thread, so a slow Redis holds up only the callers waiting on it.
"""

import time
from collections.abc import Hashable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import cache

from .backends import backends


class Expiring:
    """Entries kept for a given number of seconds. Past `max_size` entries the map
    is emptied: cheap, and it is only a cache."""

    def __init__(self, max_size: int = 10_000):
        self.max_size = max_size
        self._items: dict[Hashable, tuple[float, Any]] = {}

    def get(self, key: Hashable) -> tuple[bool, Any]:
        """(True, value) while the entry is fresh, else (False, None)."""
        hit = self._items.get(key)
        return (True, hit[1]) if hit and hit[0] > time.monotonic() else (False, None)

    def put(self, key: Hashable, value: Any, *, seconds: float) -> None:
        if len(self._items) > self.max_size:
            self._items.clear()
        self._items[key] = (time.monotonic() + seconds, value)


async def in_cache(fn, *args):
    """Run `fn(*args)`, a call of the cache: in place for the in-process cache, else on a pool thread."""
    if backends().local_cache:
        return fn(*args)
    return await sync_to_async(fn, thread_sensitive=False)(*args)


def count(key: str, timeout: float) -> int:
    """Add one to the counter `key` (created with `timeout`); its new value."""
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr: a new count
        return 1
