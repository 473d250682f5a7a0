"""Two processes recording the same worker's jobs at once lose nothing."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stats import ema
from stats.models import SizeBin, WorkerStats

from .factories import make_worker

ROOT = Path(__file__).resolve().parents[2]
JOBS_PER_PROCESS = 150

HAMMER = """
import os, time, django
django.setup()
from datetime import timedelta
from django.utils import timezone
from stats.services import Failure, JobOutcome, record_outcome
worker_id = int(os.environ["WORKER_ID"])
while time.time() < float(os.environ["START_AT"]):
    time.sleep(0.001)
for i in range(int(os.environ["JOBS"])):
    now = timezone.now()
    record_outcome(worker_id=worker_id, outcome=JobOutcome(
        public_id=f"{os.getpid()}-{i}", kind="text", size=4.2, succeeded=True,
        started_at=now - timedelta(seconds=1), seconds=1.0, prompt_tokens=0, completion_tokens=10,
    ))
    record_outcome(worker_id=worker_id, outcome=JobOutcome(
        public_id=f"{os.getpid()}-{i}-f", kind="text", size=4.2, succeeded=False, failure=Failure.ERROR,
        started_at=now, seconds=0.1,
    ))
"""


def test_two_processes_updating_one_worker_lose_no_update(server_env, db_access):
    worker = make_worker()  # committed: the processes must see it
    env = {
        **os.environ,
        **server_env,
        "DJANGO_SETTINGS_MODULE": "queenbee_site.settings",
        "WORKER_ID": str(worker.pk),
        "JOBS": str(JOBS_PER_PROCESS),
        # Both start together after Django has loaded, so the very first row is raced for too.
        "START_AT": str(time.time() + 4),
    }
    processes = [
        subprocess.Popen([sys.executable, "-c", HAMMER], cwd=ROOT, env=env, stderr=subprocess.PIPE) for _ in range(2)
    ]
    for p in processes:
        _, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr.decode()[-2000:]
    stats = WorkerStats.objects.get(worker=worker)
    assert stats.inferences == 2 * JOBS_PER_PROCESS
    assert stats.failures == 2 * JOBS_PER_PROCESS
    row = SizeBin.objects.get(worker=worker, kind="text", bin=ema.size_bin(4.2))
    assert row.count == 2 * JOBS_PER_PROCESS
    assert row.value == pytest.approx(0.1)  # every sample was 1 s over 10 tokens
    assert stats.proof_job  # exactly one job was its proof of work
