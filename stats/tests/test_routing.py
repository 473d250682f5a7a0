"""Routing honours the stats, and every job's outcome feeds them (real server, real workers)."""

import os

import openai
import pytest
from django.utils import timezone

from conftest import wait_for
from routing.models import Job
from stats import services
from stats.models import SizeBin, WorkerStats
from testkit.fake_worker import Delay, Disconnect, chat_reply, stream_chunks
from workers.models import Connection, Worker

from .factories import outcome

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
HI = [{"role": "user", "content": "hi"}]


def stats_of(worker) -> WorkerStats | None:
    return WorkerStats.objects.filter(worker__identity=worker.identity).first()


def punished(worker) -> bool:
    s = stats_of(worker)
    return bool(s and s.punished_until and s.punished_until > timezone.now())


def prove(worker, *, seconds: float) -> None:
    """Give a worker a history, as if it had served jobs of this size already."""
    worker_id = Worker.objects.get(identity=worker.identity).pk
    services.record_outcome(
        worker_id=worker_id, outcome=outcome(size=4.2, seconds=seconds, prompt_tokens=0, completion_tokens=10)
    )


def all_free(*workers) -> bool:
    identities = [w.identity for w in workers]
    return not Connection.objects.filter(worker__identity__in=identities).exclude(state=Connection.State.FREE).exists()


def served_by(reply) -> str:
    return wait_for(
        lambda: Job.objects.filter(public_id=reply.id).values_list("worker__identity", flat=True).first(),
        what="job recorded",
    )


def test_a_new_workers_first_job_is_its_proof_of_work_and_nobody_pays_for_it(start_worker, client, db_access):
    worker = start_worker()
    extra = {"gpu_filter": {"pubkey": worker.pubkey}}
    first = client.chat.completions.create(model=MODEL, messages=HI, extra_body=extra)
    second = client.chat.completions.create(model=MODEL, messages=HI, extra_body=extra)
    proof = wait_for(lambda: Job.objects.filter(public_id=first.id).first(), what="first job recorded")
    later = wait_for(lambda: Job.objects.filter(public_id=second.id).first(), what="second job recorded")
    assert (proof.proof_of_work, proof.charge_caller, proof.pay_worker) == (True, False, False)
    assert (later.proof_of_work, later.charge_caller, later.pay_worker) == (False, True, True)
    stats = stats_of(worker)
    assert stats.proven_at is not None and stats.proof_job == first.id and stats.inferences == 2
    assert SizeBin.objects.filter(worker__identity=worker.identity, kind="text").exists()  # seeded


def test_a_fast_worker_gets_most_jobs(start_worker, client, db_access):
    tag = f"speed-{os.urandom(3).hex()}"
    fast = start_worker(capabilities=["llama-infer", tag])
    slow = start_worker(capabilities=["llama-infer", tag], script=lambda job: iter([Delay(0.2), chat_reply()]))
    prove(fast, seconds=0.05)
    prove(slow, seconds=2.0)
    extra = {"gpu_filter": {"capabilities": [tag]}}
    replies = []
    for _ in range(30):
        # A worker is freed just after its reply is relayed: a request sent the
        # moment the last one was answered may find only the other one free.
        wait_for(lambda: all_free(fast, slow), what="both workers free")
        replies.append(client.chat.completions.create(model=MODEL, messages=HI, extra_body=extra))
    by_fast = sum(served_by(r) == fast.identity for r in replies)
    assert by_fast >= 21, f"the fast worker served {by_fast} of 30"
    assert len(fast.jobs) + len(slow.jobs) == 30


def test_a_worker_that_errors_is_punished_and_gets_no_jobs_while_others_fit(start_worker, client, db_access):
    tag = f"punish-{os.urandom(3).hex()}"
    broken = start_worker(capabilities=["llama-infer", tag], script=lambda job: iter([{"error": "CUDA out of memory"}]))
    healthy = start_worker(capabilities=["llama-infer", tag])
    prove(broken, seconds=0.01)  # the faster on paper
    prove(healthy, seconds=1.0)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model=MODEL, messages=HI, extra_body={"gpu_filter": {"pubkey": broken.pubkey}})
    wait_for(lambda: punished(broken), what="punishment recorded")
    assert stats_of(broken).punish_reason == "error"
    extra = {"gpu_filter": {"capabilities": [tag]}}
    for _ in range(10):
        client.chat.completions.create(model=MODEL, messages=HI, extra_body=extra)
    assert len(broken.jobs) == 1 and len(healthy.jobs) == 10


@pytest.mark.parametrize(
    "script, reason",
    [
        (lambda job: iter([Delay(2), chat_reply()]), "timeout"),
        (lambda job: iter([Disconnect()]), "disconnect"),
        (lambda job: iter([{"error": "busy"}]), "busy"),
    ],
    ids=["timeout", "disconnect", "busy"],
)
def test_each_kind_of_failure_punishes_the_worker(start_worker, client, db_access, script, reason):
    worker = start_worker(script=script)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(
            model=MODEL, messages=HI, extra_body={"ft_timeout": 1, "gpu_filter": {"pubkey": worker.pubkey}}
        )
    wait_for(lambda: punished(worker), what=f"{reason} punished")
    assert stats_of(worker).punish_reason == reason
    assert stats_of(worker).failures == 1


def test_a_garbage_frame_punishes_the_worker_even_if_its_answer_then_arrives(start_worker, client, db_access):
    worker = start_worker(script=lambda job: iter(["this is not JSON", chat_reply("still answered")]))
    reply = client.chat.completions.create(
        model=MODEL, messages=HI, extra_body={"gpu_filter": {"pubkey": worker.pubkey}}
    )
    assert reply.choices[0].message.content == "still answered"
    wait_for(lambda: (s := stats_of(worker)) and s.inferences == 1, what="job recorded")
    assert punished(worker) and stats_of(worker).punish_reason == "garbage"


def test_a_worker_that_dies_mid_stream_is_punished(start_worker, client, db_access):
    worker = start_worker(script=lambda job: iter([*stream_chunks(["a", "b"])[:2], Disconnect()]))
    stream = client.chat.completions.create(
        model=MODEL, messages=HI, stream=True, extra_body={"gpu_filter": {"pubkey": worker.pubkey}}
    )
    with pytest.raises(openai.APIError):
        list(stream)
    wait_for(lambda: punished(worker), what="disconnect punished")
    assert stats_of(worker).punish_reason == "disconnect"


def test_a_stream_records_its_time_to_first_token_and_a_sample(start_worker, client, db_access):
    worker = start_worker(script=lambda job: iter([Delay(0.3), *stream_chunks(["a", "b", "c"]), {}]))
    stream = client.chat.completions.create(
        model=MODEL, messages=HI, stream=True, extra_body={"gpu_filter": {"pubkey": worker.pubkey}}
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "abc"
    stats = wait_for(lambda: (s := stats_of(worker)) and s.inferences and s, what="stream recorded")
    assert stats.ttft_count == 1 and stats.ttft_seconds >= 0.3
    assert SizeBin.objects.get(worker__identity=worker.identity, kind="text").count == 1


def test_a_caller_who_leaves_does_not_count_against_the_worker(start_worker, client, db_access):
    # The worker holds the stream open far longer than the caller stays, so the
    # job can only end by the caller leaving (0.5 s raced disconnect detection on a busy CI box).
    worker = start_worker(script=lambda job: iter([*stream_chunks(["a"])[:2], Delay(8), {}]))
    stream = client.chat.completions.create(
        model=MODEL, messages=HI, stream=True, extra_body={"gpu_filter": {"pubkey": worker.pubkey}}
    )
    next(iter(stream))
    stream.close()
    wait_for(
        lambda: Job.objects.filter(worker__identity=worker.identity, status="cancelled").exists(), what="cancelled job"
    )
    assert not punished(worker)
