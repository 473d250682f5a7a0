"""A per-process loop: a pass, then a wait that a wake cuts short, until stopped."""

import asyncio

from runtime.loops import Periodic


def test_a_wake_cuts_the_wait_short():
    passes = []

    async def run():
        passes.append(len(passes))

    async def hour():
        return 3600.0

    async def scenario():
        loop = Periodic("test", run=run, wait=hour)
        await loop.start()
        await asyncio.sleep(0.01)
        loop.wake()
        await asyncio.sleep(0.01)
        await loop.stop()

    asyncio.run(scenario())
    assert passes == [0, 1]


def test_a_stop_lets_the_pass_under_way_end():
    events = []

    async def run():
        events.append("began")
        await asyncio.sleep(0.05)
        events.append("ended")

    async def hour():
        return 3600.0

    async def scenario():
        loop = Periodic("test", run=run, wait=hour)
        await loop.start()
        await asyncio.sleep(0.01)
        await loop.stop()
        assert not loop.running

    asyncio.run(scenario())
    assert events == ["began", "ended"]


def test_a_failed_pass_does_not_end_the_loop(caplog):
    passes = []

    async def run():
        passes.append(1)
        if len(passes) == 1:
            raise ConnectionError("the database went away")

    async def soon():
        return 0.01

    async def scenario():
        loop = Periodic("test", run=run, wait=soon)
        await loop.start()
        await asyncio.sleep(0.1)
        await loop.stop()

    asyncio.run(scenario())
    assert len(passes) >= 2 and "test: a pass failed" in caplog.text


def test_a_loop_that_waits_first_does_no_pass_before_its_interval():
    passes = []

    async def run():
        passes.append(1)

    async def hour():
        return 3600.0

    async def scenario():
        loop = Periodic("test", run=run, wait=hour, first_wait=True)
        await loop.start()
        await asyncio.sleep(0.02)
        await loop.stop()

    asyncio.run(scenario())
    assert passes == []
