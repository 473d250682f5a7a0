"""The hot path's database cost, pinned: a worker connect, a claim, a chat job.

Everything runs in this process on the real code (the consumer through
WebsocketCommunicator, the claim, routing's services and its batch writer);
`OnTestThread` runs the database calls on the thread these counts watch. Each
phase waits for what it started in the background (the pool's state writes, the
recorder), so a count is the whole cost of the phase and can only match exactly.
"""

import asyncio
import os

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection

from api.auth import BYPASS_CALLER
from queenbee_site.asgi import application
from routing import services as routing
from routing.recorder import recorder
from routing.serializers import ChatCompletionSerializer, validate
from stats.services import record_outcome
from stats.tests.factories import live_process, make_worker, outcome
from testkit.fake_worker import FakeWorker, chat_reply, stream_chunks
from workers import live, services
from workers.liveness import registry
from workers.models import TrustState
from workers.live import live_pool
from workers.pool import MemoryPool
from workers.protocol import parse_connect_message
from workers.services import Need

from .counting import OnTestThread
from .test_memory_pool import add

pytestmark = pytest.mark.django_db(transaction=True)

# A transaction's BEGIN and COMMIT are counted as statements (both backends).
TRANSACTION = 2
MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"


def test_registering_a_connection_costs_two_statements(django_assert_num_queries):
    process = live_process()
    info = parse_connect_message(FakeWorker("ws://unused/worker").message())
    # the identity's upsert and the connection's insert, in one transaction
    with django_assert_num_queries(TRANSACTION + 2):
        services.register_connection(process_id=process.pk, channel_name=f"test.chan!{os.urandom(4).hex()}", info=info)


def test_a_claims_standings_cost_three_queries_for_one_worker_or_forty(django_assert_num_queries):
    for count in (1, 40):
        ids = {make_worker().pk for _ in range(count)}
        # trust (workers); punishment and proof, then the speed estimates (stats)
        with django_assert_num_queries(3):
            standing = services.standings(worker_ids=ids, size=4.2, capabilities=("llama-infer",))
        assert set(standing) == ids


def test_a_memory_pool_claim_reads_three_times_and_writes_its_state_once(monkeypatch, django_assert_num_queries):
    workers = [make_worker() for _ in range(40)]
    db = OnTestThread(monkeypatch)

    async def scenario():
        pool = MemoryPool()
        for i, worker in enumerate(workers):
            await add(pool, 9_200_000 + i, worker)
        claim = await pool.claim(need=Need(size=1), job_id="one", reply_channel="r")
        await pool.drained()
        db.phase()
        assert await pool.release_or_hand_off(connection_id=claim.connection_id, job_id="one") is None
        await pool.drained()

    db.start(scenario)
    # the standings' three reads; the connection's row marked busy
    with django_assert_num_queries(4):
        db.serve()
    # the release reads nothing (nobody waits); the row marked free
    with django_assert_num_queries(1):
        db.finish()


@pytest.mark.skipif(not settings.REDIS_URL, reason="the Redis pool is the cluster's")
def test_a_redis_pool_claim_reads_the_standings_only(monkeypatch, django_assert_num_queries):
    from workers.redis_pool import RedisPool

    worker = make_worker()
    monkeypatch.setattr(registry, "process_id", live_process().pk)
    db = OnTestThread(monkeypatch)
    need = Need(size=1, capabilities=("llama-infer", f"redis-count-{os.urandom(3).hex()}"))

    async def scenario():
        pool = RedisPool()
        await pool.add(
            connection_id=9_300_000, channel_name="chan-9300000", worker_id=worker.pk,
            facts=services.ConnectionFacts(
                worker.pk, services.Connection.capabilities_to_text(need.capabilities), "", False, 24000,
                64_000_000_000, 512_000, "", "", "", "", "", "",
            ),
            current_model="", models=(),
        )
        try:
            assert await pool.claim(need=need, job_id="one", reply_channel="r") is not None
            db.phase()
        finally:
            await pool.script("remove")(
                keys=[pool.keys["state"], pool.keys["facts"], pool.keys["holder"], pool.keys["version"]], args=[9_300_000]
            )

    db.start(scenario)
    # the standings' three reads: the holder writes the row's state, when the job arrives
    with django_assert_num_queries(3):
        db.serve()
    db.finish()


class InProcessWorker:
    """A trusted worker on this process's /worker consumer, answering one job."""

    def __init__(self, reply) -> None:
        self.fake = FakeWorker("ws://unused/worker")
        self.reply = reply
        self.socket = WebsocketCommunicator(application, "/worker")

    def connections(self) -> dict:
        pool = live_pool()
        return pool.live if isinstance(pool, MemoryPool) else pool.own

    async def connect(self) -> None:
        assert (await self.socket.connect())[0]
        await self.socket.send_json_to(self.fake.message())
        while not self.connections():
            await asyncio.sleep(0.01)
        await live_pool().drained()

    async def freed(self) -> None:
        """Until the connection's row says free again: the release is in the pool's
        state mirror and written (the pool's own state says free a moment before
        the release reaches the mirror, so that is not waited for)."""
        mirror, [connection_id] = live_pool().mirror, self.connections()
        while connection_id in mirror.written or connection_id in mirror.pending:
            await asyncio.sleep(0.01)
        await live_pool().drained()

    async def answer(self) -> None:
        job = await self.socket.receive_json_from(timeout=10)
        await live_pool().drained()  # the claim's state write, before the job can end
        for frame in self.reply(job):
            await self.socket.send_json_to(frame)


def chat_path(monkeypatch, settings, *, stream: bool):
    """Connect a worker, then run one chat job through routing's services; the phases' DB calls."""
    settings.TRUST_TRUSTED_VERIFY_SHARE = 0  # a verification is a job of its own, counted on its own
    monkeypatch.setattr(live, "_pool", None)
    monkeypatch.setattr(registry, "process_id", live_process().pk)
    db = OnTestThread(monkeypatch)
    reply = (lambda job: [*stream_chunks(["Hello", " there"]), {}]) if stream else (lambda job: [chat_reply()])
    worker = InProcessWorker(reply)
    data = validate(ChatCompletionSerializer, {
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream,
        "gpu_filter": {"pubkey": worker.fake.pubkey},
    })
    spec = routing.chat_spec(data=data, caller=BYPASS_CALLER)
    measured = make_worker(identity=worker.fake.identity, trust_state=TrustState.TRUSTED)
    record_outcome(worker_id=measured.pk, outcome=outcome(size=spec.need.size))

    async def scenario():
        await worker.connect()
        db.phase()
        answering = asyncio.ensure_future(worker.answer())
        if stream:
            events = [e async for e in await routing.stream(spec=spec, prefix="chatcmpl", object_name="chat.completion.chunk")]
            assert events[-1] == routing.sse("[DONE]")
        else:
            assert (await routing.complete(spec=spec, prefix="chatcmpl", object_name="chat.completion"))["choices"]
        await answering
        await worker.freed()  # the release's state write (the mirror writes every MIRROR_INTERVAL)
        await asyncio.gather(*routing._background)  # a stream is recorded once it has ended
        await recorder.drained()
        db.phase()
        await worker.socket.disconnect()

    db.start(scenario)
    return db


# What a chat job costs the database, stream or not, for a worker measured
# before: the claim's three reads, the connection's row marked busy, then free;
# then the batch writer's: the stats (the count, the proof-of-work compare-and-set,
# the worker's and the cluster's size bins) and the Job row. The verification plan
# reads nothing: the claim's standings gave it the worker's trust state. Transaction control differs by backend (see
# routing/recorder.py): on SQLite the batch is one transaction with a savepoint
# each for the job's stats and its record (six statements), on PostgreSQL the
# stats and the record are two transactions (four).
CHAT_QUERIES = 3 + 1 + 1 + 4 + 1 + (6 if connection.vendor == "sqlite" else 4)


def test_a_worker_connect_and_a_chat_job_cost_a_fixed_number_of_queries(monkeypatch, settings, django_assert_num_queries):
    db = chat_path(monkeypatch, settings, stream=False)
    # the identity's upsert and the connection's insert, in one transaction
    with django_assert_num_queries(TRANSACTION + 2):
        db.serve()
    with django_assert_num_queries(CHAT_QUERIES):
        db.serve()
    db.finish()


def test_a_streamed_chat_job_costs_what_a_plain_one_does(monkeypatch, settings, django_assert_num_queries):
    db = chat_path(monkeypatch, settings, stream=True)
    db.serve()
    with django_assert_num_queries(CHAT_QUERIES):
        db.serve()
    db.finish()


def test_a_job_nobody_could_verify_is_recorded_unavailable_in_five_statements(django_assert_num_queries):
    from routing.models import Job
    from trust import services as trust
    from trust.models import Verification

    worker = make_worker()
    Job.objects.create(public_id="chatcmpl-unverifiable", kind="chat", model=MODEL, worker=worker, status="succeeded", verification="pending")
    check = trust.Check(
        job_id="chatcmpl-unverifiable", openai_url="/v1/chat/completions", request={"model": MODEL, "messages": []},
        completion="hi", finish_reason="stop", need=Need(size=1), seconds=0.1,
    )
    # the Verification row, the job's verification state, the worker's standing
    # (a new identity's earning stays held: nothing to settle, no outbox on the local ledger)
    with django_assert_num_queries(TRANSACTION + 3):
        trust.record_unavailable(check=check, worker_id=worker.pk, reason="nobody")
    assert Verification.objects.get(job_id="chatcmpl-unverifiable").status == "unavailable"
    assert Job.objects.get(public_id="chatcmpl-unverifiable").verification == "unavailable"
