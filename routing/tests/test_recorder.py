"""The batch writer: one bad record in a batch loses nothing else, and stats and
charges are written with each job as before."""

import asyncio
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from routing import recorder as recorder_module
from routing.models import Job
from routing.recorder import FinishedJob, write_batch
from stats.models import WorkerStats
from stats.services import JobOutcome
from workers.models import Worker

pytestmark = pytest.mark.django_db(transaction=True)


def finished(worker: Worker, public_id: str, *, status: str = Job.Status.SUCCEEDED) -> FinishedJob:
    outcome = None if status == Job.Status.CANCELLED else JobOutcome(
        public_id=public_id, kind="text", size=1.0, succeeded=status == Job.Status.SUCCEEDED,
        started_at=timezone.now() - timedelta(seconds=1), seconds=1.0, prompt_tokens=5, completion_tokens=10,
    )
    return FinishedJob(worker_id=worker.pk, outcome=outcome, fields=dict(
        public_id=public_id, kind=Job.Kind.CHAT, model="hf/x:q4", model_size=1.0, stream=False,
        api_key_id=None, caller="test", worker_id=worker.pk, status=status, error="", attempts=1,
        prompt_tokens=5, completion_tokens=10, usage_estimated=False, images=0, queue_seconds=0.0,
        first_token_seconds=None, total_seconds=1.0,
    ))


def test_a_duplicate_record_loses_nothing_else_of_its_batch():
    worker = Worker.objects.create(identity="batch-worker")
    write_batch([
        finished(worker, "chatcmpl-1"),
        finished(worker, "chatcmpl-1"),  # written twice: refused by its unique public_id
        finished(worker, "chatcmpl-2"),
        finished(worker, "chatcmpl-3", status=Job.Status.CANCELLED),
    ])
    assert sorted(Job.objects.values_list("public_id", "status")) == [
        ("chatcmpl-1", "succeeded"), ("chatcmpl-2", "succeeded"), ("chatcmpl-3", "cancelled"),
    ]
    stats = WorkerStats.objects.get(worker=worker)
    # Three outcomes reached stats (the duplicate's too: stats count what the worker did);
    # the cancelled job did not. The first success is the proof of work, never charged.
    assert stats.inferences == 3
    proof = Job.objects.get(public_id="chatcmpl-1")
    assert proof.proof_of_work and not proof.charge_caller
    assert not Job.objects.get(public_id="chatcmpl-2").proof_of_work


def test_a_batch_whose_transaction_fails_is_written_again(monkeypatch):
    worker = Worker.objects.create(identity="retry-worker")
    attempts = []
    real = recorder_module._write_batch

    async def fails_once(batch):
        attempts.append(len(batch))
        if len(attempts) == 1:
            raise OperationalError("database is locked")
        return await real(batch)

    monkeypatch.setattr(recorder_module, "_write_batch", fails_once)
    monkeypatch.setattr(recorder_module, "RETRY_PAUSE", 0.01)

    async def scenario():
        recorder = recorder_module.Recorder()
        recorder.record(finished(worker, "chatcmpl-r1"))
        recorder.record(finished(worker, "chatcmpl-r2"))
        await recorder.drained()

    asyncio.run(scenario())
    assert attempts == [2, 2]
    assert sorted(Job.objects.values_list("public_id", flat=True)) == ["chatcmpl-r1", "chatcmpl-r2"]
