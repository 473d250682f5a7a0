"""Responses across two server processes sharing PostgreSQL and Redis: stored on one, continued on the other."""

import os

import openai
import pytest

from conftest import BYPASS, connection_count, wait_for
from testkit.fake_worker import FakeWorker, stream_chunks
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
    processes = [QueenProcess(server_env, name=f"responses-{n}").start() for n in "ab"]
    yield processes
    for p in processes:
        p.stop()


def client_for(process) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{process.url}/v1", api_key=BYPASS, max_retries=0, timeout=60)


def answer_the_last_message(job):
    req = job["openai_req"]
    words = f"answer to {req['messages'][-1]['content']} after {len(req['messages']) - 1}"
    yield from [*stream_chunks([words]), {}] if req.get("stream") else [
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": words}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    ]


def test_a_response_stored_by_one_process_is_continued_and_retrieved_on_the_other(cluster, db_access):
    a, b = cluster
    worker = FakeWorker(a.ws_url, script=answer_the_last_message).start()
    try:
        wait_for(lambda: connection_count(worker.identity) == 1, what="registration")
        only = {"gpu_filter": {"pubkey": worker.pubkey}}
        first = client_for(b).responses.create(model=MODEL, input="one", extra_body=only)
        with client_for(a).responses.stream(model=MODEL, input="two", previous_response_id=first.id, extra_body=only) as stream:
            second = stream.get_final_response()
        third = client_for(b).responses.create(model=MODEL, input="three", previous_response_id=second.id, extra_body=only)
        assert (first.output_text, second.output_text, third.output_text) == ("answer to one after 0", "answer to two after 2", "answer to three after 4")
        assert client_for(a).responses.retrieve(third.id).output_text == third.output_text
        client_for(a).responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            client_for(b).responses.retrieve(first.id)
    finally:
        worker.stop()
