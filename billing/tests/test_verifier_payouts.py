"""A remote backend is told of a verifier's payout only when asked to, and only for a job it was told of."""

import os

import pytest
from django.utils import timezone

from billing import services
from billing.models import OutboxMessage
from routing.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def remote(settings):
    settings.BILLING_URL = "https://billing.example/billing"  # billing/backends.py chooses RemoteBilling
    return settings


def make_job(*, told_backend: bool) -> Job:
    job = Job.objects.create(public_id=f"chatcmpl-{os.urandom(8).hex()}", kind="chat", model="m", status="succeeded")
    if told_backend:
        OutboxMessage.objects.create(job=job, payload={"command": "complete"}, next_attempt_at=timezone.now())
    return job


def pay(job: Job) -> bool:
    return services.pay_verifier(
        job_id=job.public_id, owner_key_hash="h", payout_address="v@ln.example", prompt_tokens=5, completion_tokens=4,
        refuted=False, seconds=1.5, per_1k=None,
    )


def test_without_the_setting_the_backend_is_told_nothing(remote):
    remote.BILLING_REMOTE_VERIFY_PAYOUTS = False
    job = make_job(told_backend=True)
    assert not pay(job)
    assert not OutboxMessage.objects.filter(verified_job=job).exists()


def test_with_it_a_payout_is_a_due_complete_that_bills_nobody(remote):
    remote.BILLING_REMOTE_VERIFY_PAYOUTS = True
    job = make_job(told_backend=True)
    assert pay(job)
    row = OutboxMessage.objects.get(verified_job=job)
    assert row.state == OutboxMessage.State.PENDING and row.job_id is None
    assert row.payload["command"] == "complete" and row.payload["kind"] == "verify"
    assert (row.payload["bill_to_token"], row.payload["pay_to_lnurl"], row.payload["job_id"]) == ("", "v@ln.example", job.public_id)
    assert row.payload["usage"]["total_tokens"] == 9 and row.payload["duration"] == 1.5


def test_a_job_the_backend_never_billed_pays_no_verifier_there(remote):
    remote.BILLING_REMOTE_VERIFY_PAYOUTS = True
    job = make_job(told_backend=False)  # a proof of work, the bypass token's
    assert not pay(job)
    assert not OutboxMessage.objects.exists()
