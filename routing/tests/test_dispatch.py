"""One job per connection, draining, retries, waiting in line, no ghosts."""

import threading
import time

import openai
import pytest

from conftest import connection_count, wait_for
from routing.models import Job
from testkit.fake_worker import Delay, Disconnect, chat_reply, stream_chunks
from workers.models import Connection

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
HI = [{"role": "user", "content": "hi"}]


def state_of(worker) -> str:
    return Connection.objects.get(worker__identity=worker.identity).state


def test_a_connection_drains_until_the_workers_last_frame_after_the_caller_left(start_worker, client, db_access):
    release = threading.Event()

    def slow_stream(job):
        chunks = stream_chunks(["a", "b", "c"])
        yield chunks[0]
        yield chunks[1]
        release.wait(10)
        yield from chunks[2:]
        yield {}

    worker = start_worker(script=slow_stream, capabilities=["llama-infer", "drain-test"])
    stream = client.chat.completions.create(model=MODEL, messages=HI, stream=True, extra_body={"gpu_filter": {"pubkey": worker.pubkey}})
    next(iter(stream))
    stream.close()  # the caller goes away mid-stream
    time.sleep(0.3)
    assert state_of(worker) == "busy"
    # The connection is not handed out while it drains: a new request waits in line.
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=MODEL, messages=HI, extra_body={"timeout": 1, "gpu_filter": {"capabilities": ["drain-test"]}}, timeout=8)
    release.set()
    wait_for(lambda: state_of(worker) == "free", what="drained connection freed")
    job_id = worker.jobs[0]["openai_req"]  # the job reached the worker once
    assert job_id["stream"] is True


def test_late_frames_are_never_delivered_to_the_next_job(start_worker, client, db_access):
    def late_end_marker(job):
        yield chat_reply("first answer")
        yield {"choices": [{"message": {"content": "stale"}}]}  # a stray extra frame

    worker = start_worker(script=late_end_marker)
    extra = {"gpu_filter": {"pubkey": worker.pubkey}}
    first = client.chat.completions.create(model=MODEL, messages=HI, extra_body=extra)
    second = client.chat.completions.create(model=MODEL, messages=HI, extra_body=extra)
    assert first.choices[0].message.content == second.choices[0].message.content == "first answer"
    wait_for(lambda: Connection.objects.get(worker__identity=worker.identity).stray_frames >= 1, what="stray frame counted")


@pytest.mark.parametrize(
    "failure",
    [
        [{"error": "CUDA out of memory", "error_type": "RuntimeError"}],
        [Disconnect()],
        [Delay(3)],
    ],
    ids=["error-frame", "disconnect", "timeout"],
)
def test_it_retries_once_on_another_worker_before_the_first_token(start_worker, client, db_access, failure):
    tag = f"retry-{failure[0].__class__.__name__}"
    bad = start_worker(script=lambda job: iter(failure), capabilities=["llama-infer", tag], gpu_memory_mib=80000)
    good = start_worker(capabilities=["llama-infer", tag], gpu_memory_mib=8000)
    extra = {"ft_timeout": 1, "gpu_filter": {"capabilities": [tag]}}
    reply = client.chat.completions.create(model=MODEL, messages=HI, extra_body=extra)
    assert reply.choices[0].message.content == "Hello from the worker"
    # Each was tried once; whichever was tried first, the failing one never answered.
    assert len(good.jobs) == 1 and len(bad.jobs) <= 1
    # The job is recorded after the reply is sent.
    wait_for(lambda: Job.objects.filter(public_id=reply.id).exists(), what="job recorded")
    job = Job.objects.get(public_id=reply.id)
    assert job.worker.identity == good.identity


def test_a_stream_that_fails_after_the_first_token_ends_with_an_error_event(start_worker, client, db_access):
    def dies_mid_stream(job):
        yield from stream_chunks(["a", "b"])[:2]
        yield Disconnect()

    worker = start_worker(script=dies_mid_stream)
    stream = client.chat.completions.create(model=MODEL, messages=HI, stream=True, extra_body={"gpu_filter": {"pubkey": worker.pubkey}})
    received = []
    with pytest.raises(openai.APIError, match="disconnected"):
        for chunk in stream:
            received.append(chunk)
    assert received  # the first chunks arrived before the error
    wait_for(lambda: connection_count(worker.identity) == 0, what="no ghost after disconnect")
    wait_for(lambda: Job.objects.filter(worker__identity=worker.identity, status="failed").exists(), what="failed job recorded")


def test_a_worker_that_disconnects_mid_job_leaves_no_ghost(start_worker, client, db_access):
    worker = start_worker(script=lambda job: iter([Disconnect()]))
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model=MODEL, messages=HI, extra_body={"gpu_filter": {"pubkey": worker.pubkey}})
    assert raised.value.status_code in (502, 503)
    wait_for(lambda: connection_count(worker.identity) == 0, what="connection removed")


def test_requests_wait_in_line_for_a_busy_worker(start_worker, client):
    worker = start_worker(script=lambda job: iter([Delay(0.5), chat_reply("served")]))
    extra = {"gpu_filter": {"pubkey": worker.pubkey}}
    results = []

    def call():
        results.append(client.chat.completions.create(model=MODEL, messages=HI, extra_body=extra).choices[0].message.content)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == ["served"] * 3


def test_a_request_waits_until_the_queue_deadline_then_gets_503(start_worker, client):
    worker = start_worker(script=lambda job: iter([Delay(8), chat_reply()]))
    extra = {"gpu_filter": {"pubkey": worker.pubkey}}

    def occupy():
        try:
            client.chat.completions.create(model=MODEL, messages=HI, extra_body=extra)
        except openai.APIError:
            pass  # the worker is stopped when the test ends

    threading.Thread(target=occupy, daemon=True).start()
    time.sleep(0.5)
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model=MODEL, messages=HI, extra_body=extra)
    assert raised.value.status_code == 503
    assert raised.value.body["code"] == "all_workers_busy"
    assert time.monotonic() - started >= 4  # QUEUE_TIMEOUT is 5 s in tests


def test_it_fails_at_once_when_no_worker_could_ever_serve(start_worker, client):
    start_worker(gpu_memory_mib=4000)
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="TheBloke/Llama-2-70B-GGUF:Q4_K_M", messages=HI, extra_body={"gpu_filter": {"capabilities": ["no-such-capability"]}})
    assert raised.value.status_code == 503
    assert raised.value.body["code"] == "no_worker_fits"
    assert "no-such-capability" in raised.value.body["message"]


def test_it_times_out_with_504_when_no_other_worker_can_retry(start_worker, client):
    worker = start_worker(script=lambda job: iter([Delay(3), chat_reply()]))
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model=MODEL, messages=HI, extra_body={"ft_timeout": 0.5, "gpu_filter": {"pubkey": worker.pubkey}})
    assert raised.value.status_code == 504


def test_a_worker_error_frame_becomes_a_502(start_worker, client):
    worker = start_worker(script=lambda job: iter([{"error": "Load llama failed.", "error_type": "AssertionError"}]))
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model=MODEL, messages=HI, extra_body={"gpu_filter": {"pubkey": worker.pubkey}})
    assert raised.value.status_code == 502
    assert "Load llama failed" in raised.value.body["message"]


def test_a_bad_model_filter_reported_by_the_worker_is_a_400(start_worker, client):
    worker = start_worker(script=lambda job: iter([{"error": "Multiple files match, please specify a better filter", "error_type": "ValueError"}]))
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=HI, extra_body={"gpu_filter": {"pubkey": worker.pubkey}})
    assert raised.value.body["param"] == "model"
    assert len(worker.jobs) == 1  # not retried: no worker could do better


def test_a_worker_without_the_model_is_replaced_by_one_that_has_it(start_worker, client):
    missing = [{"error": "Can't find gguf, ggml or config.json", "error_type": "Exception"}]
    without = start_worker(script=lambda job: iter(missing), capabilities=["llama-infer", "missing-model"], gpu_memory_mib=80000)
    holder = start_worker(capabilities=["llama-infer", "missing-model"], gpu_memory_mib=8000)
    reply = client.chat.completions.create(model=MODEL, messages=HI, extra_body={"gpu_filter": {"capabilities": ["missing-model"]}})
    assert reply.choices[0].message.content == "Hello from the worker"
    assert len(holder.jobs) == 1 and len(without.jobs) <= 1


def test_a_model_no_worker_has_is_a_400(start_worker, client):
    missing = [{"error": "Can't find gguf, ggml or config.json", "error_type": "Exception"}]
    worker = start_worker(script=lambda job: iter(missing))
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=HI, extra_body={"gpu_filter": {"pubkey": worker.pubkey}})
    assert raised.value.body["code"] == "model_not_found"


def test_a_model_too_large_for_any_column_is_no_worker_fits_not_a_500(start_worker, client):
    start_worker()
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="someone/giant-100000000000000B-GGUF:Q4_K_M", messages=HI)
    assert raised.value.status_code == 503
    assert raised.value.body["code"] == "no_worker_fits"
