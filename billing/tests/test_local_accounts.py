"""Local accounts: credits checked before a worker is claimed, charged once per job, never overdrawn."""

import threading

import openai
import pytest
from django.db import IntegrityError

from api.hashing import hash_secret
from api.models import ApiKey
from billing import services
from billing.models import Account, LedgerEntry
from billing.tests.conftest import HI, MODEL, charges_of, jobs_of, sdk, tag
from conftest import wait_for
from routing.models import Job
from routing.records import record_and_bill
from stats.services import Failure, punish
from testkit.fake_worker import Delay, chat_reply, stream_chunks
from workers.models import Worker


def test_an_account_without_credit_gets_429_before_any_worker_is_claimed(queen, make_account, proven_worker):
    worker = proven_worker()
    _, raw = make_account(credits=0)
    with pytest.raises(openai.RateLimitError) as raised:
        sdk(queen, raw).chat.completions.create(model=MODEL, messages=HI, extra_body=worker.extra)
    error = raised.value.body
    assert error["code"] == "insufficient_quota" and error["type"] == "insufficient_quota"
    assert len(worker.jobs) == 1  # only its proof of work


def test_a_succeeded_job_charges_the_caller_by_its_usage(queen, make_account, proven_worker):
    worker = proven_worker()
    account, raw = make_account(credits=100)
    reply = sdk(queen, raw).chat.completions.create(model=MODEL, messages=HI, extra_body=worker.extra)
    wait_for(lambda: charges_of(account), what="charge")
    job = Job.objects.get(public_id=reply.id)
    # 1 per request + 7 prompt tokens at 1/1k + 4 completion tokens at 4/1k, rounded up.
    assert (job.prompt_tokens, job.completion_tokens, job.usage_estimated) == (7, 4, False)
    [charge] = charges_of(account)
    assert (charge.job_id, charge.amount, charge.balance_after) == (job.pk, -2, 98)
    assert Account.objects.get(pk=account.pk).balance == 98


def test_a_stream_is_billed_on_its_counted_completion_tokens(queen, make_account, proven_worker):
    tokens = [f" t{i}" for i in range(300)]
    worker = proven_worker(script=lambda job: iter([*stream_chunks(tokens), {}]))
    account, raw = make_account(credits=100)
    chunks = list(sdk(queen, raw).chat.completions.create(model=MODEL, messages=HI, stream=True, extra_body=worker.extra))
    job = wait_for(lambda: Job.objects.filter(public_id=chunks[0].id).first(), what="job recorded")
    assert job.completion_tokens == 300
    [charge] = wait_for(lambda: charges_of(account), what="charge")
    assert charge.amount == -(1 + 2)  # per request + ceil((1 prompt token × 1 + 300 × 4) / 1000)


def test_a_failed_job_is_never_billed(queen, make_account, proven_worker):
    worker = proven_worker(script=lambda job: iter([{"error": "CUDA out of memory"}]))
    account, raw = make_account(credits=100)
    with pytest.raises(openai.APIStatusError):
        sdk(queen, raw).chat.completions.create(model=MODEL, messages=HI, extra_body=worker.extra)
    wait_for(lambda: jobs_of(raw).filter(status=Job.Status.FAILED).exists(), what="failed job recorded")
    assert not LedgerEntry.objects.filter(job__in=jobs_of(raw)).exists()
    assert Account.objects.get(pk=account.pk).balance == 100


def test_a_job_retried_on_another_worker_is_billed_once(queen, make_account, proven_worker):
    shared = tag()
    good = proven_worker(capabilities=["llama-infer", shared])
    bad = proven_worker(script=lambda job: iter([{"error": "CUDA out of memory"}]), capabilities=["llama-infer", shared])
    # Ranked last, so the failing worker is tried first and the job is retried on this one.
    punish(worker_id=Worker.objects.get(identity=good.identity).pk, reason=Failure.BUSY)
    account, raw = make_account(credits=100)
    reply = sdk(queen, raw).chat.completions.create(model=MODEL, messages=HI, extra_body={"gpu_filter": {"capabilities": [shared]}})
    assert reply.choices[0].message.content == "Hello from the worker"
    assert len(bad.jobs) == 2 and len(good.jobs) == 2  # proof + one attempt each
    wait_for(lambda: jobs_of(raw).count() == 2, what="both attempts recorded")
    wait_for(lambda: charges_of(account), what="charge")
    assert [c.job.public_id for c in charges_of(account)] == [reply.id]
    assert Account.objects.get(pk=account.pk).balance == 98


def test_recording_the_same_job_twice_bills_it_once(db_access, make_account):
    account, raw = make_account(credits=100)
    key = ApiKey.objects.get(key_hash=hash_secret(raw))
    fields = dict(public_id=f"chatcmpl-twice-{account.pk}", kind="chat", model=MODEL, status="succeeded", api_key=key, caller=key.prefix, prompt_tokens=10, completion_tokens=10)
    record_and_bill(fields=fields)
    with pytest.raises(IntegrityError):
        record_and_bill(fields=fields)
    job = Job.objects.get(public_id=fields["public_id"])
    assert [c.job_id for c in charges_of(account)] == [job.pk]
    with pytest.raises(IntegrityError):  # and the ledger itself refuses a second charge
        services.debit(account_id=account.pk, job_id=job.pk, amount=5)
    assert Account.objects.get(pk=account.pk).balance == 98


def test_concurrent_requests_from_one_account_never_overdraw_it(queen, make_account, proven_worker):
    workers = [proven_worker(script=lambda job: iter([Delay(0.3), chat_reply()]), capabilities=["llama-infer", "overdraw"]) for _ in range(4)]
    account, raw = make_account(credits=3)
    api = sdk(queen, raw)
    outcomes: list[str] = []

    def call():
        try:
            api.chat.completions.create(model=MODEL, messages=HI, extra_body={"gpu_filter": {"capabilities": ["overdraw"]}})
            outcomes.append("ok")
        except openai.RateLimitError:
            outcomes.append("429")
        except openai.APIStatusError as exc:
            outcomes.append(str(exc.status_code))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    served = outcomes.count("ok")
    assert served >= 2, outcomes  # several were admitted on the same last credits
    wait_for(lambda: len(charges_of(account)) == served, what="every served job charged")
    account.refresh_from_db()
    charges = charges_of(account)
    assert account.balance == 0
    assert sum(-c.amount for c in charges) == 3  # never more than it had
    assert sum(c.unpaid for c in charges) == 2 * served - 3
    assert all(c.balance_after >= 0 for c in charges)
    assert len(workers) == 4


def test_a_worker_owner_earns_a_share_except_for_proof_of_work(queen, client, make_account, start_worker, proven_worker):
    owner, owner_key = make_account(credits=0)
    worker = start_worker(auth_key=owner_key, capabilities=["llama-infer", f"owner-{owner.pk}"])
    extra = {"gpu_filter": {"capabilities": [f"owner-{owner.pk}"]}}
    caller, raw = make_account(credits=100)
    proof = sdk(queen, raw).chat.completions.create(model=MODEL, messages=HI, extra_body=extra)
    wait_for(lambda: Job.objects.filter(public_id=proof.id).exists(), what="proof job recorded")
    # In good standing, so its earning is paid at once (trust/tests: how it gets there).
    Worker.objects.filter(identity=worker.identity).update(trust_state="verified")
    paid = sdk(queen, raw).chat.completions.create(model=MODEL, messages=HI, extra_body=extra)
    wait_for(lambda: LedgerEntry.objects.filter(account=owner, kind="earning").exists(), what="earning")
    assert Job.objects.get(public_id=proof.id).proof_of_work
    assert [c.job.public_id for c in charges_of(caller)] == [paid.id]
    [earning] = LedgerEntry.objects.filter(account=owner, kind="earning")
    assert (earning.job.public_id, earning.amount) == (paid.id, 1)  # floor(2 × 0.75)
    assert len(worker.jobs) == 2


def test_a_worker_without_an_api_key_of_its_owner_earns_into_an_account_of_its_own(queen, make_account, proven_worker):
    worker = proven_worker(auth_key="some-worker-secret")
    _, raw = make_account(credits=100)
    sdk(queen, raw).chat.completions.create(model=MODEL, messages=HI, extra_body=worker.extra)
    earnings = wait_for(lambda: list(LedgerEntry.objects.filter(account__worker_key_hash=hash_secret("some-worker-secret"), kind="earning")), what="earning")
    assert earnings[-1].account.name.startswith("worker owner ")


def test_a_key_without_an_account_is_unmetered(queen, db_access, proven_worker):
    worker = proven_worker()
    _, raw = ApiKey.create_key(name="unmetered")
    reply = sdk(queen, raw).chat.completions.create(model=MODEL, messages=HI, extra_body=worker.extra)
    job = wait_for(lambda: Job.objects.filter(public_id=reply.id).first(), what="job recorded")
    assert not LedgerEntry.objects.filter(job=job).exists()
