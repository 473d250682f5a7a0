"""The per-process expiring map and the cache counter."""

import asyncio
import uuid

from django.core.cache import cache

from runtime import caching


def test_entries_expire_and_a_cached_none_is_a_hit(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(caching.time, "monotonic", lambda: now[0])
    seen = caching.Expiring(max_size=2)
    seen.put("key", None, seconds=10)  # a lookup that found nothing is remembered too
    assert seen.get("key") == (True, None)
    now[0] += 11
    assert seen.get("key") == (False, None)
    assert seen.get("never") == (False, None)


def test_past_its_size_the_map_starts_again():
    seen = caching.Expiring(max_size=2)
    for key in ("a", "b", "c"):
        seen.put(key, key, seconds=60)
    seen.put("d", "d", seconds=60)  # over the bound: emptied, then d
    assert seen.get("a") == (False, None) and seen.get("d") == (True, "d")


def test_count_adds_one_per_call_from_async_code():
    key = f"qb:test-count:{uuid.uuid4().hex}"

    async def three():
        return [await caching.in_cache(caching.count, key, 60) for _ in range(3)]

    try:
        assert asyncio.run(three()) == [1, 2, 3]
        assert cache.get(key) == 3
    finally:
        cache.delete(key)
