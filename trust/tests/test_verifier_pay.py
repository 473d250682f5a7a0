"""Verifiers are paid: a counted verdict, passed or refuted, earns its verifier's owner
credits for the tokens it scored, paid by the operator and capped by what it kept of the job."""

import math

from api.hashing import hash_secret
from billing import services as billing
from billing.models import Account, LedgerEntry
from billing.tests.conftest import sdk
from conftest import wait_for
from routing.models import Job
from trust.models import Verification
from workers.models import TrustState, Worker

from .conftest import HI, LIKELY, MODEL, liar, scores_of, set_state, verifier_script, verify_jobs, wait_state

# 4,000 plausible words: completion tokens dominate, so the rate (not the cap) decides the pay.
LONG_ANSWER = " ".join(["honest"] * 4000)
# A prompt of 10,000 characters: prompt tokens dominate, so the cap decides.
LONG_PROMPT = [{"role": "user", "content": "x " * 5000}]


def ask(queen, raw, lane, messages=HI):
    client = sdk(queen, raw)
    return client.chat.completions.create(model=MODEL, messages=messages, extra_body={"gpu_filter": {"capabilities": [lane]}})


def verify_earnings(auth_key: str) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(account__worker_key_hash=hash_secret(auth_key), kind=LedgerEntry.Kind.VERIFY_EARNING))


def charged(job_id: str) -> int:
    return -LedgerEntry.objects.get(job__public_id=job_id, kind=LedgerEntry.Kind.CHARGE).amount


def verdict_of(job_id: str) -> Verification:
    return wait_for(lambda: Verification.objects.filter(job_id=job_id).exclude(status="pending").first(), what="verdict")


def counting_verifier(prompt_tokens: int):
    """A verifier like the fake one that counts the prompt as `prompt_tokens` tokens."""

    def script(job):
        if job["openai_url"] != "/queenbee/verify":
            yield from verifier_script(job)
            return
        tokens = scores_of(job["openai_req"]["completion"])
        yield {"verification": {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens), "tokens": tokens, "end": LIKELY}}

    return script


def test_a_counted_verification_pays_the_verifier_for_the_tokens_it_scored(queen, start_worker, verifier, make_account, lane):
    start_worker(capabilities=["llama-infer", lane], script=liar(LONG_ANSWER, prompt_tokens=5, completion_tokens=4000), auth_key=f"w-{lane}")
    account, raw = make_account(credits=1000)
    proof = ask(queen, raw, lane)  # the free proof of work: verified, but nobody paid for it
    assert verdict_of(proof.id).status == "passed"
    paid = ask(queen, raw, lane)
    assert verdict_of(paid.id).status == "passed"
    [earning] = wait_for(lambda: verify_earnings(f"verifier-{lane}"), what="the verifier's earning")
    # 5 prompt + 4,000 completion tokens scored at 1 × 0.75 credits per 1k, rounded up:
    # 4, below the 5 the operator kept of the 18 charged (the worker's 75% is 13).
    assert charged(paid.id) == 18
    assert earning.amount == math.ceil(4005 * 0.75 / 1000) == 4
    assert earning.job.public_id == paid.id
    assert earning.note == f"verified job {paid.id} (passed): 4005 tokens scored, paid by the operator"
    # Paid by the operator: the caller paid for its job once, and nothing more.
    assert Account.objects.get(pk=account.pk).balance == 1000 - 18
    assert [e.kind for e in LedgerEntry.objects.filter(account=account)] == ["charge", "top_up"]
    assert not LedgerEntry.objects.filter(job__public_id=proof.id, kind=LedgerEntry.Kind.VERIFY_EARNING).exists()


def test_the_pay_never_exceeds_what_the_operator_kept_of_the_job(queen, start_worker, make_account, lane):
    verifier = start_worker(capabilities=["llama-infer"], features=["verify"], script=counting_verifier(8000), auth_key=f"v-{lane}")
    set_state(verifier, TrustState.TRUSTED)
    start_worker(capabilities=["llama-infer", lane], script=liar("a short honest answer", prompt_tokens=8000), auth_key=f"w-{lane}")
    _, raw = make_account(credits=1000)
    ask(queen, raw, lane, LONG_PROMPT)  # proof of work
    paid = ask(queen, raw, lane, LONG_PROMPT)
    assert verdict_of(paid.id).status == "passed"
    [earning] = wait_for(lambda: verify_earnings(f"v-{lane}"), what="the verifier's earning")
    # 8,004 tokens at 0.75 per 1k would be 7; the operator kept 3 of the 10 charged.
    assert charged(paid.id) == 10
    assert earning.amount == 3
    job = Job.objects.get(public_id=paid.id)
    assert billing.verifier_earning(job=job, scored_tokens=1000, per_1k=2.0) == 2
    assert billing.verifier_earning(job=job, scored_tokens=2000, per_1k=None) == 2
    assert billing.verifier_earning(job=job, scored_tokens=1, per_1k=0.0) == 0


def test_a_verification_that_caught_a_liar_is_paid_too(queen, start_worker, verifier, make_account, lane):
    worker = start_worker(capabilities=["llama-infer", lane], script=liar("zebra quantum velvet lantern"), auth_key=f"liar-{lane}")
    account, raw = make_account(credits=1000)
    ask(queen, raw, lane)  # proof of work, refuted: new → suspect (nobody paid for it: no earning)
    wait_state(worker, TrustState.SUSPECT)
    caught = ask(queen, raw, lane)
    wait_state(worker, TrustState.QUARANTINED)
    [earning] = wait_for(lambda: verify_earnings(f"verifier-{lane}"), what="the verifier's earning")
    assert earning.job.public_id == caught.id and "(refuted)" in earning.note
    paid = charged(caught.id)
    assert earning.amount == min(math.ceil((5 + 4) * 0.75 / 1000), paid - math.floor(paid * 0.75)) == 1
    # The caller got back all it paid; the liar earned nothing.
    assert Account.objects.get(pk=account.pk).balance == 1000
    assert not LedgerEntry.objects.filter(account__worker_key_hash=hash_secret(f"liar-{lane}"), kind="earning").exists()


def test_a_verifier_sending_malformed_scores_earns_nothing(queen, start_worker, make_account, lane):
    def broken(job):
        yield {"verification": {"prompt_tokens": 5, "completion_tokens": 4, "tokens": "all fine"}}

    verifier = start_worker(capabilities=["llama-infer"], features=["verify"], script=broken, auth_key=f"v-{lane}")
    set_state(verifier, TrustState.TRUSTED)
    start_worker(capabilities=["llama-infer", lane], script=liar("a short honest answer"), auth_key=f"w-{lane}")
    _, raw = make_account(credits=1000)
    replies = [ask(queen, raw, lane) for _ in range(2)]
    assert [verdict_of(r.id).status for r in replies] == ["unavailable", "unavailable"]
    assert len(verify_jobs(verifier)) == 2
    assert not verify_earnings(f"v-{lane}")


def test_a_verifier_that_lost_its_standing_before_its_verdict_is_neither_counted_nor_paid(queen, start_worker, make_account, lane):
    def falls_from_grace(job):
        if job["openai_url"] == "/queenbee/verify":
            Worker.objects.filter(identity=verifier.identity).update(trust_state=TrustState.SUSPECT)
        yield from verifier_script(job)

    verifier = start_worker(capabilities=["llama-infer"], features=["verify"], script=falls_from_grace, auth_key=f"v-{lane}")
    set_state(verifier, TrustState.TRUSTED)
    worker = start_worker(capabilities=["llama-infer", lane], script=liar("zebra quantum velvet lantern"), auth_key=f"w-{lane}")
    _, raw = make_account(credits=1000)
    reply = ask(queen, raw, lane)
    verification = verdict_of(reply.id)
    assert verification.status == "unavailable" and "no longer in good standing" in verification.reason
    # Its refutation did not count against the worker, nor earn anything.
    assert Worker.objects.get(identity=worker.identity).trust_state == TrustState.NEW
    assert not verify_earnings(f"v-{lane}")
