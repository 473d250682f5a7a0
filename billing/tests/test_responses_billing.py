"""`/v1/responses` is billed as the chat job it runs as: once, by its usage, streamed or not."""

import openai
import pytest

from api.hashing import hash_secret
from api.models import ApiKey
from billing.models import Account
from billing.tests.conftest import MODEL, charges_of, jobs_of, sdk
from conftest import wait_for
from routing.models import Job, StoredResponse
from testkit.fake_worker import stream_chunks


def test_a_response_charges_its_job_by_usage(queen, make_account, proven_worker):
    worker = proven_worker()
    account, raw = make_account(credits=100)
    response = sdk(queen, raw).responses.create(model=MODEL, input="hi", extra_body=worker.extra)
    [charge] = wait_for(lambda: charges_of(account), what="charge")
    job = Job.objects.get(public_id=response.id)
    assert (job.prompt_tokens, job.completion_tokens) == (response.usage.input_tokens, response.usage.output_tokens) == (7, 4)
    # 1 per request + 7 prompt tokens at 1/1k + 4 completion tokens at 4/1k, rounded up.
    assert (charge.job_id, charge.amount) == (job.pk, -2)
    assert Account.objects.get(pk=account.pk).balance == 98


def test_a_streamed_response_is_billed_on_the_usage_it_reports(queen, make_account, proven_worker):
    worker = proven_worker(script=lambda job: iter([*stream_chunks([f" t{i}" for i in range(300)]), {}]))
    account, raw = make_account(credits=100)
    with sdk(queen, raw).responses.stream(model=MODEL, input="hi", extra_body=worker.extra) as stream:
        final = stream.get_final_response()
    assert final.usage.output_tokens == 300
    [charge] = wait_for(lambda: charges_of(account), what="charge")
    job = Job.objects.get(public_id=final.id)
    assert job.completion_tokens == 300 and charge.job_id == job.pk
    assert charge.amount == -(1 + 2)  # per request + ceil((1 prompt token × 1 + 300 × 4) / 1000)


def test_an_account_without_credit_gets_429_and_nothing_is_kept(queen, make_account, proven_worker):
    worker = proven_worker()
    _, raw = make_account(credits=0)
    with pytest.raises(openai.RateLimitError):
        sdk(queen, raw).responses.create(model=MODEL, input="hi", extra_body=worker.extra)
    assert len(worker.jobs) == 1  # only its proof of work
    key = ApiKey.objects.get(key_hash=hash_secret(raw))
    assert not jobs_of(raw).exists() and not StoredResponse.objects.filter(owner=f"key:{key.pk}").exists()
