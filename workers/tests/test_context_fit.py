"""A job that needs so many tokens of context fits only the workers whose announced
window holds them; a worker that announced none is assumed to (workers/services.py `Need.fits`)."""

import asyncio
import json

import pytest

from stats.tests.factories import make_worker
from workers.models import TrustState
from workers.pool import MemoryPool
from workers.redis_pool import _entry
from workers.services import ConnectionFacts, Need, NoWorkerFits

LONG = Need(size=1, capabilities=("llama-infer",), context_tokens=6000)


def facts(worker_id: int = 1, **fields) -> ConnectionFacts:
    defaults = dict(
        worker_id=worker_id, capabilities_text=",llama-infer,", version_key="", is_web=False, gpu_memory_mib=24000,
        ram_bytes=64_000_000_000, disk_space_mib=512_000, pubkey="", identity="", slug="", owner_key_hash="",
        trust_state="", address="",
    )
    return ConnectionFacts(**{**defaults, **fields})


def test_a_worker_whose_window_holds_the_job_fits():
    assert LONG.fits(facts(context_length=8192))
    assert LONG.fits(facts(context_length=6000))


def test_a_worker_whose_window_is_known_to_be_too_small_does_not_fit():
    assert not LONG.fits(facts(context_length=4096))


def test_a_worker_that_said_nothing_is_assumed_to_fit():
    assert LONG.fits(facts(context_length=0))
    assert LONG.fits(facts())


def test_a_job_that_names_no_context_fits_any_window():
    assert Need(size=1).fits(facts(context_length=512))


def test_the_refusal_of_a_job_nobody_holds_names_the_context_it_needs():
    assert "a context window of at least 6000 tokens" in LONG.describe()


def test_a_waiters_need_keeps_its_context_through_redis():
    assert Need.from_dict(json.loads(json.dumps(LONG.as_dict()))) == LONG


def test_a_waiter_enqueued_by_another_version_still_reads():
    older = {k: v for k, v in LONG.as_dict().items() if k != "context_tokens"}
    assert Need.from_dict(older).context_tokens == 0
    assert Need.from_dict({**LONG.as_dict(), "from_a_newer_process": 1}) == LONG


def test_facts_an_older_process_published_say_no_context():
    text = json.dumps(["chan", 7, "", [], ",llama-infer,", "", False, 24000.0, 1, 1, "", "", "", "", ""])
    assert _entry(1, text.encode()).facts.context_length == 0
    assert _entry(1, json.dumps([*json.loads(text), 8192]).encode()).facts.context_length == 8192


@pytest.mark.django_db(transaction=True)
def test_the_memory_pool_gives_a_long_job_to_the_worker_that_holds_it():
    small, big = make_worker(), make_worker()

    async def scenario():
        pool = MemoryPool()
        await pool.add(connection_id=9_700_001, channel_name="chan-small", worker_id=small.pk, facts=facts(small.pk, context_length=2048), current_model="", models=())
        await pool.add(connection_id=9_700_002, channel_name="chan-big", worker_id=big.pk, facts=facts(big.pk, context_length=32768), current_model="", models=())
        claim = await pool.claim(need=LONG, job_id="long", reply_channel="r")
        assert claim.connection_id == 9_700_002
        # The big one is busy: the long job waits for it rather than take the small one.
        assert await pool.claim(need=LONG, job_id="long2", reply_channel="r") is None

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_the_memory_pool_names_the_largest_window_when_none_holds_the_job():
    small, medium, quarantined = make_worker(), make_worker(), make_worker(trust_state=TrustState.QUARANTINED)

    async def scenario():
        pool = MemoryPool()
        for cid, worker, window in ((9_700_011, small, 2048), (9_700_012, medium, 4096), (9_700_013, quarantined, 5000)):
            await pool.add(connection_id=cid, channel_name=f"chan-{cid}", worker_id=worker.pk, facts=facts(worker.pk, context_length=window), current_model="", models=())
        with pytest.raises(NoWorkerFits):
            await pool.claim(need=LONG, job_id="long", reply_channel="r")
        assert await pool.largest_context(need=LONG) == 4096  # a quarantined worker gets no job, so it is not named
        assert await pool.largest_context(need=Need(size=1, capabilities=("sdxl",))) is None

    asyncio.run(scenario())
