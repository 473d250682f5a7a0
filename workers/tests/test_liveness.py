"""Process liveness, crash recovery, graceful shutdown, stuck workers and dead claims."""

import signal
import threading
import time

import httpx
import openai
import pytest
from django.conf import settings

from conftest import BYPASS, connection_count, wait_for
from routing.models import Job
from testkit.fake_worker import Delay, FakeWorker, stream_chunks
from testkit.server import QueenProcess
from workers.models import Connection, ServerProcess
from workers.services import Need

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
HI = [{"role": "user", "content": "hi"}]
FAST_LIVENESS = {"PROCESS_HEARTBEAT_INTERVAL": "0.3", "PROCESS_GRACE": "1.5"}


@pytest.fixture
def queens(server_env):
    started: list[QueenProcess] = []

    def start(name: str, **env) -> QueenProcess:
        process = QueenProcess({**server_env, **FAST_LIVENESS, **env}, name=name).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def client_for(process) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{process.url}/v1", api_key=BYPASS, max_retries=0, timeout=30)


def test_a_killed_process_stops_offering_its_workers_after_the_grace_period(queens, db_access):
    doomed = queens("doomed")
    survivor = queens("survivor")
    worker = FakeWorker(doomed.ws_url).start()
    wait_for(lambda: connection_count(worker.identity) == 1, what="registration")
    doomed.kill()
    time.sleep(1.6)  # PROCESS_GRACE
    # Rows of the dead process expire by heartbeat: nothing is routed to them...
    with pytest.raises(openai.InternalServerError) as raised:
        client_for(survivor).chat.completions.create(model=MODEL, messages=HI, extra_body={"gpu_filter": {"pubkey": worker.pubkey}})
    assert raised.value.body["code"] == "no_worker_fits"
    # ...and any live process's heartbeat sweeps them.
    other = FakeWorker(survivor.ws_url).start()
    wait_for(lambda: connection_count(worker.identity) == 0, timeout=10, what="dead process swept")
    other.stop()


def test_a_restarted_process_cleans_up_after_its_crashed_predecessor(queens, db_access):
    first = queens("phoenix", PROCESS_GRACE="600")
    worker = FakeWorker(first.ws_url).start()
    wait_for(lambda: connection_count(worker.identity) == 1, what="registration")
    first.kill()
    assert connection_count(worker.identity) == 1  # the grace period has not passed
    second = queens("phoenix", PROCESS_GRACE="600")
    newcomer = FakeWorker(second.ws_url).start()  # the first worker makes it register
    wait_for(lambda: connection_count(newcomer.identity) == 1, what="registration")
    assert connection_count(worker.identity) == 0
    assert ServerProcess.objects.filter(name="phoenix").count() == 1
    newcomer.stop()


def test_sigterm_lets_running_streams_finish_then_sends_workers_away(queens, db_access):
    process = queens("draining", SHUTDOWN_GRACE="10")

    def slow_stream(job):
        for chunk in stream_chunks(["one", " two", " three"]):
            yield chunk
            yield Delay(0.4)
        yield {}

    worker = FakeWorker(process.ws_url, script=slow_stream).start()
    wait_for(lambda: connection_count(worker.identity) == 1, what="registration")
    received: list[str] = []

    def consume():
        stream = client_for(process).chat.completions.create(model=MODEL, messages=HI, stream=True, extra_body={"gpu_filter": {"pubkey": worker.pubkey}})
        received.extend(c.choices[0].delta.content or "" for c in stream if c.choices)

    reader = threading.Thread(target=consume)
    reader.start()
    wait_for(lambda: worker.jobs, what="job started")
    process.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    refused = httpx.post(f"{process.url}/v1/chat/completions", json={"model": MODEL, "messages": HI}, headers={"Authorization": f"Bearer {BYPASS}"})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
    reader.join(15)
    assert "".join(received) == "one two three"  # the running stream finished
    worker.wait_closed()
    assert worker.close_code == 1001
    assert process.proc.wait(10) is not None
    # The drain wrote the stream's record before the process exited.
    assert Job.objects.filter(worker__identity=worker.identity, status="succeeded", stream=True).count() == 1
    assert not ServerProcess.objects.filter(name="draining").exists()  # it left the registry, for good


def test_a_worker_that_stops_answering_times_out_and_is_dropped_after_draining(queens, db_access):
    process = queens("stuck", DRAIN_TIMEOUT="1")

    def hangs(job):
        yield stream_chunks(["a"])[0]
        yield Delay(30)

    worker = FakeWorker(process.ws_url, script=hangs).start()
    wait_for(lambda: connection_count(worker.identity) == 1, what="registration")
    stream = client_for(process).chat.completions.create(model=MODEL, messages=HI, stream=True, extra_body={"ft_timeout": 0.5, "gpu_filter": {"pubkey": worker.pubkey}})
    with pytest.raises(openai.APIError, match="Timed out"):
        list(stream)
    worker.wait_closed(timeout=10)
    assert worker.close_code == 4008
    wait_for(lambda: connection_count(worker.identity) == 0, what="connection dropped")


@pytest.mark.skipif(not settings.REDIS_URL, reason="the embedded default keeps claims in the server's memory")
def test_a_claim_whose_job_never_arrives_is_freed_by_the_audit(queens, server_env, db_access):
    import asyncio

    from workers.redis_pool import RedisPool

    process = queens("auditor", STALE_CLAIM_SECONDS="0.5")
    worker = FakeWorker(process.ws_url, capabilities=["llama-infer", "audit-test"]).start()
    wait_for(lambda: connection_count(worker.identity) == 1, what="registration")
    # A claimer (of another process) that dies right after claiming: the
    # connection is busy, no job follows.
    pool = RedisPool()
    pool.prefix = "qb-pool:" + server_env.get("CACHE_KEY_PREFIX", "") + ":"
    pool.keys = {k: pool.prefix + k for k in pool.keys}
    need = Need(size=1, capabilities=("audit-test",))

    async def claim():
        for _ in range(50):  # the worker joins the pool just after its row is written
            if claimed := await pool.claim(need=need, job_id="never-sent", reply_channel="nobody"):
                return claimed
            await asyncio.sleep(0.1)

    assert asyncio.run(claim()) is not None
    # The request waits in line until the audit frees the claim.
    reply = client_for(process).chat.completions.create(model=MODEL, messages=HI, extra_body={"gpu_filter": {"pubkey": worker.pubkey}})
    assert reply.choices
    worker.stop()
