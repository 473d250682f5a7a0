"""Fine-tunes are billed once, when they succeed: never when they fail or are cancelled."""

import pytest
from django.conf import settings
from django.db import IntegrityError, transaction

from billing import services
from billing.models import Account, LedgerEntry, OutboxMessage, Price
from billing.tests.conftest import BILLING_SECRET, tag
from conftest import BYPASS, wait_for
from finetune.billing import bill_fine_tune
from finetune.models import FineTuningJob
from finetune.tests.conftest import BASE_MODEL, TRAINING, Api, fine_tune_script, new_key

WORKER_AUTH_KEY = "fine-tune-worker-auth-key-never-sent-91c2"


def upload(api: Api) -> str:
    response = api.upload(TRAINING)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def balance(account: Account) -> int:
    return Account.objects.get(pk=account.pk).balance


def failing_script(job):
    yield {"status": "download_data"}
    yield {"status": "error", "detail": "OutOfMemoryError('CUDA out of memory')"}
    yield {}


@pytest.fixture
def fine_tune_price(db_access):
    """Fine-tunes of 7B models cost 300 credits, by a row of the price table."""
    price, _ = Price.objects.update_or_create(kind=Price.Kind.FINE_TUNE, min_size=6.5, defaults={"per_request": 300})
    yield price
    price.delete()


# --- Local accounts -----------------------------------------------------------------------------


def test_a_succeeded_fine_tune_charges_its_account_once_and_pays_the_worker_owner(
    fine_tune_queen, make_account, start_ft_worker, fine_tune_price
):
    account, raw = make_account(credits=1000)
    owner, owner_key = make_account(credits=0)  # the worker runs with one of this account's keys
    api = Api(fine_tune_queen, raw)
    worker = start_ft_worker(fine_tune_queen, fine_tune_script(b"lora", b"gguf"), auth_key=owner_key)
    job_id = api.create_job(upload(api), worker)["id"]
    api.wait_succeeded(job_id)

    job = FineTuningJob.objects.get(public_id=job_id)
    assert job.api_key.account_id == account.pk and job.bill_to == ""
    [charge] = LedgerEntry.objects.filter(fine_tune=job, kind=LedgerEntry.Kind.CHARGE)
    assert (charge.account_id, charge.amount, charge.balance_after, charge.unpaid, charge.job) == (account.pk, -300, 700, 0, None)
    [earning] = LedgerEntry.objects.filter(fine_tune=job, kind=LedgerEntry.Kind.EARNING)
    assert (earning.account_id, earning.amount) == (owner.pk, 225)  # BILLING_WORKER_SHARE 0.75
    assert (balance(account), balance(owner)) == (700, 225)

    # Billing it again (a retried write, a second process) is refused by the ledger.
    with pytest.raises(IntegrityError), transaction.atomic():
        bill_fine_tune(job=job)
    assert (balance(account), balance(owner)) == (700, 225)
    assert LedgerEntry.objects.filter(fine_tune=job).count() == 2


def test_a_failed_or_cancelled_fine_tune_is_never_billed(fine_tune_queen, make_account, start_ft_worker, fine_tune_price):
    account, raw = make_account(credits=1000)
    api = Api(fine_tune_queen, raw)
    worker = start_ft_worker(fine_tune_queen, failing_script, auth_key=WORKER_AUTH_KEY)
    file_id = upload(api)
    failed = api.create_job(file_id, worker)["id"]
    api.wait_failed(failed)
    queued = api.http.post("/v1/fine_tuning/jobs", json={"model": BASE_MODEL, "training_file": file_id, "gpu_filter": {"pubkey": "no-such-worker"}})
    cancelled = api.http.post(f"/v1/fine_tuning/jobs/{queued.json()['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"

    jobs = FineTuningJob.objects.filter(public_id__in=[failed, cancelled["id"]])
    assert sorted(j.status for j in jobs) == ["cancelled", "failed"]
    assert not LedgerEntry.objects.filter(fine_tune__in=jobs).exists()
    assert balance(account) == 1000


def test_an_account_without_credit_gets_429_when_it_asks_for_a_fine_tune(fine_tune_queen, make_account, db_access):
    account, raw = make_account(credits=0)
    api = Api(fine_tune_queen, raw)
    file_id = upload(api)  # storing a file is not refused
    response = api.http.post("/v1/fine_tuning/jobs", json={"model": BASE_MODEL, "training_file": file_id})
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "insufficient_quota"
    assert api.http.get("/v1/fine_tuning/jobs").json()["data"] == []


def test_a_key_without_an_account_and_the_bypass_token_fine_tune_for_free(fine_tune_queen, start_ft_worker, db_access):
    worker = start_ft_worker(fine_tune_queen, fine_tune_script(b"lora", b"gguf"), auth_key=WORKER_AUTH_KEY)
    ids = []
    for key in (new_key(), BYPASS):
        api = Api(fine_tune_queen, key)
        ids.append(api.create_job(upload(api), worker)["id"])
        api.wait_succeeded(ids[-1])
    assert not LedgerEntry.objects.filter(fine_tune__public_id__in=ids).exists()


def test_a_fine_tune_is_priced_by_the_largest_price_row_for_its_size_else_the_setting(django_db_setup, db_access):
    job = FineTuningJob(model_size=7.0)
    assert services.fine_tune_cost(model_size=job.model_size) == settings.BILLING_PRICE_PER_FINE_TUNE == 500
    small, large = (Price.objects.create(kind=Price.Kind.FINE_TUNE, min_size=size, per_request=credits) for size, credits in ((0.25, 200), (7.0, 400)))
    try:
        assert services.fine_tune_cost(model_size=job.model_size) == 400
        assert services.fine_tune_cost(model_size=3.0) == 200
    finally:
        small.delete()
        large.delete()


# --- Remote billing -----------------------------------------------------------------------------


def completes_for(billing_server, job_id: str):
    return [r for r in billing_server.commands("complete") if r.body["job_id"] == job_id]


def test_a_succeeded_fine_tune_sends_one_complete_with_usage_through_the_outbox(remote_queen, billing_server, start_ft_worker):
    token = f"user-token-{tag()}"
    api = Api(remote_queen, token)
    worker = start_ft_worker(
        remote_queen, fine_tune_script(b"lora", b"gguf"), auth_key=WORKER_AUTH_KEY, ln_address="trainer@ln.example"
    )
    job_id = api.create_job(upload(api), worker, hyperparameters={"n_epochs": 2})["id"]
    api.wait_succeeded(job_id)

    [complete] = wait_for(lambda: completes_for(billing_server, job_id), what="complete delivered")
    assert complete.headers["Authorization"] == f"Bearer {BILLING_SECRET}"
    body = complete.body
    assert body["command"] == "complete" and body["bill_to_token"] == token
    assert body["pay_to_lnurl"] == "trainer@ln.example" and body["pay_worker"] is True
    assert (body["kind"], body["model"], body["model_size"]) == ("fine_tune", BASE_MODEL, 7.0)
    assert body["usage"] == {"job": "fine_tune", "training_examples": 10, "n_epochs": 2}
    assert body["duration"] > 0
    assert "pay_to_auth" not in body and WORKER_AUTH_KEY.encode() not in complete.raw

    job = FineTuningJob.objects.get(public_id=job_id)
    assert job.bill_to == ""  # it moved to the outbox row with the success
    row = wait_for(lambda: OutboxMessage.objects.filter(fine_tune=job, state="delivered").first(), what="row delivered")
    assert row.payload["bill_to_token"] == "" and row.job is None
    assert not LedgerEntry.objects.filter(fine_tune=job).exists()  # the backend keeps the accounts
    assert len(completes_for(billing_server, job_id)) == 1


def test_a_failed_fine_tune_sends_nothing_and_forgets_the_token(remote_queen, billing_server, start_ft_worker):
    token = f"user-token-{tag()}"
    api = Api(remote_queen, token)
    worker = start_ft_worker(remote_queen, failing_script, auth_key=WORKER_AUTH_KEY)
    job_id = api.create_job(upload(api), worker)["id"]
    api.wait_failed(job_id)
    job = FineTuningJob.objects.get(public_id=job_id)
    assert job.bill_to == ""
    assert not OutboxMessage.objects.filter(fine_tune=job).exists()
    assert not completes_for(billing_server, job_id)
