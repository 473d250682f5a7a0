"""A stream's frames that arrived together are relayed together (routing/keepalive.py `frames`)."""

import asyncio

import pytest

from routing import keepalive


async def arriving(*groups, fail: Exception | None = None):
    """The frames of `groups`, each group at once, the groups a loop turn apart."""
    for group in groups:
        for frame in group:
            yield frame
        await asyncio.sleep(0.01)
    if fail is not None:
        raise fail
    yield {}


async def collect(frames) -> list:
    return [item async for item in keepalive.frames(frames, interval=5)]


def test_frames_that_arrived_together_come_as_one_list_and_the_end_ends_them():
    one, two, three = {"n": 1}, {"n": 2}, {"n": 3}
    assert asyncio.run(collect(arriving([one, two], [three]))) == [[one, two], [three]]


def test_frames_before_a_failure_are_delivered_before_it_is_raised():
    async def scenario():
        seen = []
        with pytest.raises(TimeoutError):
            async for item in keepalive.frames(arriving([{"n": 1}, {"n": 2}], fail=TimeoutError("stalled")), interval=5):
                seen.append(item)
        return seen

    assert asyncio.run(scenario()) == [[{"n": 1}, {"n": 2}]]


def test_without_keepalives_each_frame_is_its_own_list():
    async def scenario():
        return [item async for item in keepalive.frames(arriving([{"n": 1}, {"n": 2}]), interval=0)]

    assert asyncio.run(scenario()) == [[{"n": 1}], [{"n": 2}]]
