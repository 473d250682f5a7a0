"""Two server processes sharing PostgreSQL and Redis act as one."""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from conftest import BYPASS, connection_count, wait_for
from testkit.fake_worker import Delay, FakeWorker, chat_reply
from testkit.server import QueenProcess

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")),
        reason="needs DATABASE_URL (PostgreSQL) and REDIS_URL",
    ),
]

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"


@pytest.fixture(scope="module")
def cluster(server_env):
    # A long line: this test is about who gets which answer, not about latency
    # on a busy machine.
    env = {**server_env, "QUEUE_TIMEOUT": "60"}
    processes = [QueenProcess(env, name=f"cluster-{n}").start() for n in "ab"]
    yield processes
    for p in processes:
        p.stop()


def client_for(process) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{process.url}/v1", api_key=BYPASS, max_retries=0, timeout=60)


def echo(job):
    """Answer with the caller's own words, after a short think."""
    yield Delay(0.05)
    yield chat_reply(f"answer to {job['openai_req']['messages'][-1]['content']}")


def test_a_worker_on_one_process_serves_a_request_sent_to_the_other(cluster, db_access):
    a, b = cluster
    worker = FakeWorker(a.ws_url, capabilities=["llama-infer", "cluster-one"]).start()
    try:
        wait_for(lambda: connection_count(worker.identity) == 1, what="registration")
        reply = client_for(b).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"gpu_filter": {"pubkey": worker.pubkey}}
        )
        assert reply.choices[0].message.content == "Hello from the worker"
    finally:
        worker.stop()


def test_concurrent_requests_across_processes_never_share_a_connection(cluster, db_access):
    a, b = cluster
    tag = "cluster-fifty"
    workers = [FakeWorker((a, b)[i % 2].ws_url, script=echo, capabilities=["llama-infer", tag]).start() for i in range(5)]
    try:
        for w in workers:
            wait_for(lambda w=w: connection_count(w.identity) == 1, what="registration")
        clients = [client_for(a), client_for(b)]

        def ask(n: int) -> tuple[int, str]:
            reply = clients[n % 2].chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": f"request {n}"}],
                extra_body={"gpu_filter": {"capabilities": [tag]}, "timeout": 30},
            )
            return n, reply.choices[0].message.content

        with ThreadPoolExecutor(max_workers=50) as pool:
            answers = list(pool.map(ask, range(50)))
        assert all(text == f"answer to request {n}" for n, text in answers)
        assert sum(len(w.jobs) for w in workers) == 50
        assert all(w.overlaps == 0 for w in workers)
        assert sum(1 for w in workers if w.jobs) >= 3  # the load spread
    finally:
        for w in workers:
            w.stop()
