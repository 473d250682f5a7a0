"""Replays: a long sampled answer delivered again for an unrelated prompt is refuted as it is recorded."""

import uuid

import pytest

from billing.models import LedgerEntry
from billing.tests.conftest import charges_of, sdk
from conftest import wait_for
from routing.models import Job
from trust import replays
from trust.models import TrustEvent
from workers.models import TrustState

from .conftest import MODEL, liar, state_of, wait_state

SAMPLED = {"temperature": 0.8}


def long_answer() -> str:
    return f"{uuid.uuid4().hex} " + "a short honest answer that goes on and on " * 6


def chat(content: str, **fields) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **SAMPLED, **fields}


def test_only_long_answers_sampled_at_a_temperature_are_fingerprinted():
    answer = long_answer()
    assert replays.fingerprint(request=chat("tell me a story"), completion=answer) is not None
    assert replays.fingerprint(request=chat("tell me a story"), completion=answer[:150]) is None  # short
    for fields in ({"temperature": 0}, {"temperature": 0.2}, {"seed": 7}, {"top_k": 1}, {"top_p": 0.05}, {"min_p": 0.95},
                   {"response_format": {"type": "json_object"}}, {"tools": [{"type": "function", "function": {"name": "f"}}]}):
        assert replays.fingerprint(request=chat("tell me a story", **fields), completion=answer) is None, fields
    no_temperature = {"model": MODEL, "messages": [{"role": "user", "content": "tell me a story"}]}
    assert replays.fingerprint(request=no_temperature, completion=answer) is None  # the worker's default: nearly greedy


def test_an_answer_copying_its_prompt_is_not_fingerprinted():
    answer = long_answer()
    assert replays.fingerprint(request=chat(f"Fix the typos in:\n{answer}"), completion=answer) is None


def test_the_same_answer_for_an_unrelated_prompt_is_a_replay_and_for_the_same_or_a_like_prompt_is_not():
    answer = long_answer()
    assert replays.replayed_job(job_id="j1", request=chat("tell me a story about bees"), completion=answer) == ""
    assert replays.replayed_job(job_id="j2", request=chat("tell me a story about bees"), completion=answer) == ""
    alike = "tell me a story about bees, please"
    assert replays.replayed_job(job_id="j3", request=chat(alike), completion=answer) == ""
    assert replays.replayed_job(job_id="j4", request=chat("what is the capital of France?"), completion=answer) == "j1"
    assert replays.replayed_job(job_id="j1", request=chat("anything"), completion=answer) == ""  # itself, recorded again


def test_a_shared_system_prompt_does_not_make_two_questions_alike():
    answer = long_answer()
    system = {"role": "system", "content": "You are the helpful assistant of the Acme store. " * 20}

    def asking(question):
        return {"model": MODEL, "messages": [system, {"role": "user", "content": question}], **SAMPLED}

    assert replays.replayed_job(job_id="s1", request=asking("Where is my order?"), completion=answer) == ""
    assert replays.replayed_job(job_id="s2", request=asking("Do you sell umbrellas?"), completion=answer) == "s1"


def test_sketches_estimate_how_much_two_prompts_share():
    a = replays.sketch("the quick brown fox jumps over the lazy dog")
    assert replays.alike(a, a) == 1.0
    assert replays.alike(a, replays.sketch("the quick brown fox jumps over the lazy cat")) >= replays.PROMPTS_ALIKE
    assert replays.alike(a, replays.sketch("what is the capital of france")) < replays.PROMPTS_ALIKE


def ask(queen, raw, lane, content: str):
    return sdk(queen, raw).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], temperature=0.8,
        extra_body={"gpu_filter": {"capabilities": [lane]}},
    )


def test_a_worker_replaying_one_answer_is_refuted_unbilled_and_quarantined_without_a_verifier(queen, start_worker, make_account, lane):
    # Nobody announces `verify` here: the replay alone convicts it.
    worker = start_worker(capabilities=["llama-infer", lane], script=liar(long_answer()), auth_key=f"replayer-{lane}")
    account, raw = make_account(credits=1000)
    first = ask(queen, raw, lane, "tell me a story about bees")  # the free proof of work
    replayed = ask(queen, raw, lane, "what is the capital of France?")
    wait_state(worker, TrustState.SUSPECT)
    ask(queen, raw, lane, "how do magnets work?")
    wait_state(worker, TrustState.QUARANTINED)
    job = wait_for(lambda: Job.objects.filter(public_id=replayed.id).first(), what="the job's record")
    assert job.verification == "failed" and not job.charge_caller and not job.pay_worker
    assert not charges_of(account)
    assert not LedgerEntry.objects.filter(kind__in=("earning", "hold"), job=job).exists()
    [event, _] = TrustEvent.objects.filter(worker__identity=worker.identity).order_by("created_at")
    assert event.to_state == "suspect" and f"replayed the answer of job {first.id}" in event.detail


def test_an_honest_worker_sampling_different_answers_is_never_called_a_replayer(queen, start_worker, make_account, lane):
    answers = iter([long_answer() for _ in range(3)])
    worker = start_worker(capabilities=["llama-infer", lane], script=lambda job: liar(next(answers))(job), auth_key=f"honest-{lane}")
    _, raw = make_account(credits=1000)
    for prompt in ("tell me a story about bees", "what is the capital of France?", "how do magnets work?"):
        ask(queen, raw, lane, prompt)
    wait_for(lambda: Job.objects.filter(worker__identity=worker.identity).count() == 3, what="three records")
    assert state_of(worker) == TrustState.NEW
    assert not Job.objects.filter(worker__identity=worker.identity, verification="failed").exists()
