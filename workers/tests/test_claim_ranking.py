"""The live pool ranks the free connections that fit by their workers' stats."""

import asyncio

import pytest

from stats import services as stats
from stats.services import Failure
from stats.tests.factories import make_worker, outcome
from workers.pool import MemoryPool
from workers.services import Need

from .test_memory_pool import add

pytestmark = pytest.mark.django_db(transaction=True)

NEED = Need(size=4.2, capabilities=("llama-infer",))


def measured_pool(*seconds: float) -> tuple[MemoryPool, list[int]]:
    """A pool of one connection per worker, each measured once at `seconds` per job."""
    pool, worker_ids = MemoryPool(), []
    for i, s in enumerate(seconds):
        worker = make_worker()
        stats.record_outcome(worker_id=worker.pk, outcome=outcome(seconds=s))
        asyncio.run(add(pool, 9_100_000 + i, worker))
        worker_ids.append(worker.pk)
    return pool, worker_ids


async def claim(pool: MemoryPool):
    return await pool.claim(need=NEED, job_id="job", reply_channel="r")


def test_a_punished_worker_is_claimed_only_when_nothing_else_fits():
    pool, (fast, slow) = measured_pool(0.1, 5.0)
    stats.punish(worker_id=fast, reason=Failure.GARBAGE)

    async def scenario():
        assert (await claim(pool)).worker_id == slow
        # The healthy worker is busy, not gone: the request waits in line for it.
        assert await claim(pool) is None
        pool.live.pop(9_100_001)  # now nothing else fits
        pool.free.pop(9_100_001, None)
        assert (await claim(pool)).worker_id == fast

    asyncio.run(scenario())


def test_a_fast_worker_is_claimed_most_of_the_time():
    pool, (fast, _, _) = measured_pool(0.1, 1.0, 2.0)

    async def scenario():
        picks = []
        for n in range(200):
            won = await pool.claim(need=NEED, job_id=f"job-{n}", reply_channel="r")
            picks.append(won.worker_id)
            await pool.release_or_hand_off(connection_id=won.connection_id, job_id=f"job-{n}")
        return picks

    assert asyncio.run(scenario()).count(fast) >= 140
