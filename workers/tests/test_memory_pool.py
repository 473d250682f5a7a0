"""The embedded default's live pool: claims, the waiting line and hand-offs in memory."""

import asyncio
import os

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runtime.db import on_db_threads
from stats.services import Failure, punish
from stats.tests.factories import make_worker
from workers import pool as pool_module
from workers import services
from workers.models import TrustState, Worker
from workers.pool import MemoryPool
from workers.services import ConnectionFacts, Need, NoWorkerFits

pytestmark = pytest.mark.django_db(transaction=True)

NEED = Need(size=1, capabilities=("llama-infer",))


def facts(worker_id: int, **fields) -> ConnectionFacts:
    defaults = dict(
        worker_id=worker_id, capabilities_text=",llama-infer,", version_key="", is_web=False, gpu_memory_mib=24000,
        ram_bytes=64_000_000_000, disk_space_mib=512_000, pubkey="", identity="", slug="", owner_key_hash="",
        trust_state="", address="",
    )
    return ConnectionFacts(**{**defaults, **fields})


async def add(pool: MemoryPool, connection_id: int, worker: Worker) -> None:
    await pool.add(
        connection_id=connection_id, channel_name=f"chan-{connection_id}", worker_id=worker.pk,
        facts=facts(worker.pk), current_model="", models=(),
    )


def job() -> str:
    return os.urandom(6).hex()


def test_no_two_claims_get_the_same_connection_and_the_third_waits():
    workers = [make_worker(), make_worker()]

    async def scenario():
        pool = MemoryPool()
        for i, worker in enumerate(workers):
            await add(pool, 9_000_001 + i, worker)
        claims = await asyncio.gather(*(pool.claim(need=NEED, job_id=job(), reply_channel="r") for _ in range(3)))
        won = [c.connection_id for c in claims if c is not None]
        assert sorted(won) == [9_000_001, 9_000_002] and claims.count(None) == 1

    asyncio.run(scenario())


def test_a_freed_connection_goes_to_the_oldest_waiter_it_fits():
    worker = make_worker()

    async def scenario():
        pool = MemoryPool()
        await add(pool, 9_000_010, worker)
        first = await pool.claim(need=NEED, job_id="running", reply_channel="r")
        await pool.enqueue(job_id="younger", reply_channel="r2", need=NEED, position=2.0, deadline_seconds=30)
        await pool.enqueue(job_id="older", reply_channel="r1", need=NEED, position=1.0, deadline_seconds=30)
        await pool.enqueue(job_id="other", reply_channel="r0", need=Need(size=1, capabilities=("sdxl",)), position=0.5, deadline_seconds=30)
        reply_channel, message = await pool.release_or_hand_off(connection_id=first.connection_id, job_id="running")
        assert (reply_channel, message["job_id"]) == ("r1", "older")
        assert not await pool.leave(job_id="older")  # it is on its way
        assert await pool.leave(job_id="younger")
        # The release of a job the connection no longer runs changes nothing.
        assert await pool.release_or_hand_off(connection_id=first.connection_id, job_id="running") is None
        assert await pool.release_or_hand_off(connection_id=first.connection_id, job_id="older") is None
        assert pool.live[first.connection_id].state == "free"

    asyncio.run(scenario())


def test_a_punished_worker_is_not_handed_to_a_waiting_request():
    worker = make_worker()

    async def scenario():
        pool = MemoryPool()
        await add(pool, 9_000_020, worker)
        claim = await pool.claim(need=NEED, job_id="busy-job", reply_channel="r")
        await pool.enqueue(job_id="waiting", reply_channel="r", need=NEED, position=0, deadline_seconds=30)
        await on_db_threads(punish)(worker_id=worker.pk, reason=Failure.ERROR)
        assert await pool.release_or_hand_off(connection_id=claim.connection_id, job_id="busy-job") is None
        assert pool.live[claim.connection_id].state == "free"

    asyncio.run(scenario())


def test_a_quarantined_worker_gets_no_job():
    worker = make_worker(trust_state=TrustState.QUARANTINED)

    async def scenario():
        pool = MemoryPool()
        await add(pool, 9_000_030, worker)
        with pytest.raises(NoWorkerFits):
            await pool.claim(need=NEED, job_id=job(), reply_channel="r")
        verify = Need(size=1, capabilities=("llama-infer",), trust_states=(TrustState.VERIFIED,))
        with pytest.raises(NoWorkerFits):
            await pool.claim(need=verify, job_id=job(), reply_channel="r")

    asyncio.run(scenario())


def test_a_claim_reads_the_database_three_times_and_a_release_not_at_all(monkeypatch):
    workers = [make_worker() for _ in range(40)]
    counted: list[int] = []

    def standings(**kwargs):
        with CaptureQueriesContext(connection) as queries:
            result = services.standings(**kwargs)
        counted.append(len(queries))
        return result

    monkeypatch.setattr(pool_module, "_standings", on_db_threads(standings))

    async def scenario():
        pool = MemoryPool()
        for i, worker in enumerate(workers):
            await add(pool, 9_000_100 + i, worker)
        claim = await pool.claim(need=NEED, job_id="one", reply_channel="r")
        # trust (workers); punishment and proof, the speed estimates (stats)
        assert counted == [3]
        assert await pool.release_or_hand_off(connection_id=claim.connection_id, job_id="one") is None
        assert counted == [3]

    asyncio.run(scenario())


def test_a_claim_left_busy_too_long_is_reported_for_the_audit(settings):
    settings.STALE_CLAIM_SECONDS = 0
    worker = make_worker()

    async def scenario():
        pool = MemoryPool()
        await add(pool, 9_000_040, worker)
        await pool.claim(need=NEED, job_id="never-sent", reply_channel="r")
        assert await pool.stale_claims(process_id=0) == [("chan-9000040", "never-sent")]

    asyncio.run(scenario())
