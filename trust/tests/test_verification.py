"""Verification: a share of finished text jobs is re-scored by another worker, and the verdict moves trust and money."""

import httpx
import openai
import pytest

from billing.models import Account, LedgerEntry
from billing.tests.conftest import charges_of, sdk
from conftest import wait_for
from routing.models import Job
from testkit.fake_worker import chat_reply, stream_chunks
from trust.models import TrustEvent, Verification
from workers.models import TrustState, Worker

from .conftest import HI, MODEL, liar, set_state, state_of, verifier_script, verify_jobs, wait_state


def ask(queen, raw, lane, **kwargs):
    return sdk(queen, raw).chat.completions.create(model=MODEL, messages=HI, extra_body={"gpu_filter": {"capabilities": [lane]}}, **kwargs)


def owner_entries(auth_key: str, kind: str) -> list[LedgerEntry]:
    from api.hashing import hash_secret

    return list(LedgerEntry.objects.filter(account__worker_key_hash=hash_secret(auth_key), kind=kind))


def test_it_verifies_every_job_of_a_new_identity_and_pays_once_verified(queen, start_worker, verifier, make_account, lane):
    worker = start_worker(capabilities=["llama-infer", lane], script=liar("a short honest answer"), auth_key=f"honest-{lane}")
    account, raw = make_account(credits=1000)
    replies = [ask(queen, raw, lane) for _ in range(4)]  # the first is the free proof of work
    assert all(r.choices[0].message.content == "a short honest answer" for r in replies)
    wait_state(worker, TrustState.VERIFIED)
    assert len(verify_jobs(verifier)) >= 3
    assert verify_jobs(verifier)[0]["openai_req"]["completion"] == "a short honest answer"
    # While new its earnings were held; once verified they are paid.
    wait_for(lambda: len(owner_entries(f"honest-{lane}", "earning")) == 3, what="held earnings paid")
    # The proof of work earns nothing; the next two were held (a third is held too
    # when it was recorded before the verdict that verified the identity).
    assert len(owner_entries(f"honest-{lane}", "hold")) in (2, 3)
    assert Job.objects.filter(public_id__in=[r.id for r in replies], verification="passed").count() >= 3
    assert not LedgerEntry.objects.filter(account=account, kind="refund").exists()


def test_a_worker_answering_random_words_is_refunded_refuted_and_quarantined(queen, start_worker, verifier, make_account, lane):
    worker = start_worker(capabilities=["llama-infer", lane], script=liar("zebra quantum velvet lantern"), auth_key=f"liar-{lane}")
    account, raw = make_account(credits=1000)
    ask(queen, raw, lane)  # proof of work (free), refuted: new → suspect
    wait_state(worker, TrustState.SUSPECT)
    paid = ask(queen, raw, lane)
    wait_state(worker, TrustState.QUARANTINED)
    [charge] = wait_for(lambda: charges_of(account), what="charge")
    [refund] = wait_for(lambda: list(LedgerEntry.objects.filter(account=account, kind="refund")), what="refund")
    assert refund.job.public_id == paid.id and refund.amount == -charge.amount and "refuted" in refund.note
    assert Account.objects.get(pk=account.pk).balance == 1000
    assert not owner_entries(f"liar-{lane}", "earning")
    assert owner_entries(f"liar-{lane}", "forfeit")
    assert Verification.objects.get(job_id=paid.id).status == "failed"
    assert [e.to_state for e in TrustEvent.objects.filter(worker__identity=worker.identity).order_by("created_at")] == ["suspect", "quarantined"]
    # Quarantined: no jobs at all, even when it is the only worker that fits.
    verifier.stop()
    with pytest.raises(openai.APIStatusError) as raised:
        ask(queen, raw, lane)
    assert raised.value.status_code == 503


def test_a_stream_is_verified_on_its_assembled_text(queen, start_worker, verifier, make_account, lane):
    tokens = ["Hello", " from", " the", " worker"]
    worker = start_worker(capabilities=["llama-infer", lane], script=lambda job: iter([*stream_chunks(tokens), {}]))
    _, raw = make_account(credits=1000)
    list(ask(queen, raw, lane, stream=True))
    wait_for(lambda: verify_jobs(verifier), what="verification job")
    assert verify_jobs(verifier)[0]["openai_req"]["completion"] == "Hello from the worker"
    assert verify_jobs(verifier)[0]["openai_req"]["request"]["messages"] == HI
    assert state_of(worker) == TrustState.NEW


def test_an_original_worker_never_gets_a_verify_job_and_is_verified_by_others(queen, start_worker, verifier, make_account, lane):
    original = start_worker(capabilities=["llama-infer", lane], auth_key=f"orig-{lane}")  # no `features`
    set_state(verifier, TrustState.TRUSTED)
    _, raw = make_account(credits=1000)
    for _ in range(4):
        ask(queen, raw, lane)
    wait_state(original, TrustState.VERIFIED)
    assert all(j["openai_url"] == "/v1/chat/completions" for j in original.jobs)


def counting_verifier(*, claims: int | None = None):
    """The fake verifier, claiming `claims` completion tokens instead of the ones it scored."""
    def script(job):
        for frame in verifier_script(job):
            if claims is not None and "verification" in frame:
                frame["verification"]["completion_tokens"] = claims
            yield frame

    return script


@pytest.mark.parametrize("claims, billed", [(None, 200), (1, 1000)], ids=["counts-agree", "counts-disagree-with-its-scores"])
def test_a_passed_job_is_billed_the_verifiers_count_only_when_that_count_holds(queen, start_worker, make_account, lane, claims, billed):
    """The worker reports 1,000 completion tokens for a 200-word answer (within the
    bounds of its 1,100 bytes); the verifier scored 200. Its count is billed, and the
    caller refunded the difference, unless the count disagrees with its own scores."""
    checker = start_worker(capabilities=["llama-infer"], features=["verify"], script=counting_verifier(claims=claims), auth_key=f"counter-{lane}")
    set_state(checker, TrustState.TRUSTED)
    start_worker(capabilities=["llama-infer", lane], script=liar("a short honest answer " * 50, completion_tokens=1000), auth_key=f"w-{lane}")
    account, raw = make_account(credits=1000)
    ask(queen, raw, lane)  # the free proof of work
    paid = ask(queen, raw, lane)
    wait_for(lambda: Verification.objects.filter(job_id=paid.id, status="passed").exists(), what="the verdict")
    job = Job.objects.get(public_id=paid.id)
    assert job.completion_tokens == billed
    refunds = LedgerEntry.objects.filter(account=account, kind="refund")
    assert refunds.exists() == (claims is None)
    assert Verification.objects.get(job_id=paid.id).tokens == (claims if claims is not None else 200)


def template_less_verifier(job):
    """A verifier on a model without a chat template, scoring an answer that is not
    its own greedy choice (3 nats below it) but well inside the sampling support."""
    if job["openai_url"] != "/queenbee/verify":
        yield from verifier_script(job)
        return
    tokens = [[-3.3, 2, 0.9, -0.3]] * 6
    yield {"verification": {"prompt_tokens": 5, "completion_tokens": 6, "tokens": tokens, "end": [-9.0, 30, 0.99, -0.3], "chat_template": False}}


@pytest.mark.parametrize("announces", [False, True])
def test_without_a_chat_template_only_a_worker_writing_the_same_prompt_is_held_to_the_greedy_rule(
    queen, start_worker, make_account, lane, announces
):
    verifier = start_worker(capabilities=["llama-infer"], features=["verify"], script=template_less_verifier, auth_key=f"v-{lane}")
    set_state(verifier, TrustState.TRUSTED)
    # The original worker writes the prompt with llama-cpp-python's own format; one that
    # announces Queenbee's features writes it as the verifier does.
    worker = start_worker(capabilities=["llama-infer", lane], features=["verify"] if announces else None, auth_key=f"w-{lane}")
    _, raw = make_account(credits=1000)
    reply = ask(queen, raw, lane, temperature=0)
    verification = wait_for(lambda: Verification.objects.filter(job_id=reply.id).exclude(status="pending").first(), what="verdict")
    assert verification.status == ("failed" if announces else "passed")
    assert state_of(worker) == (TrustState.SUSPECT if announces else TrustState.NEW)


def test_a_verifier_in_bad_standing_is_never_asked(queen, start_worker, make_account, lane):
    suspect = start_worker(capabilities=["llama-infer"], features=["verify"], script=verifier_script)
    set_state(suspect, TrustState.SUSPECT)
    worker = start_worker(capabilities=["llama-infer", lane])
    _, raw = make_account(credits=1000)
    replies = [ask(queen, raw, lane) for _ in range(3)]
    wait_for(lambda: Job.objects.filter(public_id__in=[r.id for r in replies], verification="unavailable").count() == 3, what="verifications given up")
    assert not verify_jobs(suspect) and not verify_jobs(worker)


def test_a_verifier_is_never_the_same_owner(queen, start_worker, make_account, lane):
    checked = start_worker(capabilities=["llama-infer", lane], auth_key=f"same-{lane}")
    mine = start_worker(capabilities=["llama-infer"], features=["verify"], script=verifier_script, auth_key=f"same-{lane}")
    set_state(mine, TrustState.TRUSTED)
    set_state(checked, TrustState.NEW)
    _, raw = make_account(credits=1000)
    reply = ask(queen, raw, lane)
    job = wait_for(lambda: Job.objects.filter(public_id=reply.id).exclude(verification="pending").first(), what="verification decided")
    assert job.worker.identity == checked.identity
    assert job.verification == "unavailable" and not verify_jobs(mine)


def test_an_owner_sees_the_trust_state_and_reason_through_worker_detail_and_nobody_else_does(queen, start_worker, db_access, lane):
    worker = start_worker(capabilities=["llama-infer", lane], auth_key=f"owner-{lane}")
    Worker.objects.filter(identity=worker.identity).update(trust_state=TrustState.SUSPECT, trust_reason="a job failed verification")
    [mine] = httpx.get(f"{queen.url}/worker/detail", params={"query": f"owner-{lane}"}, timeout=10).json()
    assert (mine["trust"], mine["trust_reason"]) == ("suspect", "a job failed verification")
    # The pubkey is public: it finds the worker, not its trust state.
    [by_pubkey] = httpx.get(f"{queen.url}/worker/detail", params={"query": worker.pubkey}, timeout=10).json()
    assert "trust" not in by_pubkey
    assert all("trust" not in w for w in httpx.get(f"{queen.url}/worker/detail", timeout=10).json())


def test_the_operator_can_trust_quarantine_and_release_an_identity(start_worker, db_access, lane):
    from trust import services

    worker = start_worker(capabilities=["llama-infer", lane])
    pk = Worker.objects.get(identity=worker.identity).pk
    for state in (TrustState.QUARANTINED, TrustState.NEW, TrustState.TRUSTED):
        services.set_state(worker_id=pk, state=state, by="admin")
        assert state_of(worker) == state
    events = TrustEvent.objects.filter(worker_id=pk).order_by("created_at")
    assert [(e.kind, e.to_state) for e in events] == [("operator", "quarantined"), ("operator", "new"), ("operator", "trusted")]
