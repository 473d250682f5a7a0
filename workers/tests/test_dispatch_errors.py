"""A job the channel layer cannot carry is LayerDown (a 503); any other error in
sending it is a bug and surfaces as itself. Either way the connection is free again."""

import asyncio
import os

import pytest
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer

from stats.tests.factories import make_worker
from workers import live as live_module
from workers.dispatch import JobHandle, LayerDown
from workers.pool import MemoryPool
from workers.services import ConnectionFacts, Need

pytestmark = pytest.mark.django_db(transaction=True)

NEED = Need(size=1, capabilities=("llama-infer",))


def facts(worker_id: int) -> ConnectionFacts:
    return ConnectionFacts(
        worker_id=worker_id, capabilities_text=",llama-infer,", version_key="", is_web=False, gpu_memory_mib=24000,
        ram_bytes=64_000_000_000, disk_space_mib=512_000, pubkey="", identity="", slug="", owner_key_hash="",
        trust_state="", address="",
    )


async def send_on(pool: MemoryPool, *, channel_name: str, worker) -> JobHandle:
    """Claim the one connection (held by `channel_name`) and try to send it a job."""
    await pool.add(connection_id=9_100_001, channel_name=channel_name, worker_id=worker.pk, facts=facts(worker.pk), current_model="", models=())
    job_id = os.urandom(6).hex()
    claim = await pool.claim(need=NEED, job_id=job_id, reply_channel="r")
    handle = JobHandle(claim=claim, job_id=job_id, reply_channel="r", inbox=asyncio.Queue(), queue_seconds=0)
    await handle.send(openai_url="/v1/chat/completions", openai_req={"messages": []}, ends_with_marker=False, max_seconds=5)
    return handle


@pytest.fixture
def pool(monkeypatch) -> MemoryPool:
    pool = MemoryPool()
    monkeypatch.setattr(live_module, "_pool", pool)  # this process's live pool
    return pool


def test_a_full_channel_is_layer_down_and_frees_the_connection(pool):
    worker = make_worker()

    async def scenario():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        for _ in range(layer.get_capacity(channel)):
            await layer.send(channel, {"type": "filler"})
        with pytest.raises(LayerDown) as raised:
            await send_on(pool, channel_name=channel, worker=worker)
        assert isinstance(raised.value.__cause__, ChannelFull)
        assert await pool.claim(need=NEED, job_id="next", reply_channel="r") is not None

    asyncio.run(scenario())


def test_a_bug_in_sending_surfaces_as_itself_and_frees_the_connection(pool):
    worker = make_worker()

    async def scenario():
        # A malformed channel name is our mistake, not the layer being down.
        with pytest.raises(TypeError):
            await send_on(pool, channel_name="not a channel name", worker=worker)
        assert await pool.claim(need=NEED, job_id="next", reply_channel="r") is not None

    asyncio.run(scenario())
