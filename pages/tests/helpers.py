"""Rows the page tests need: workers, their live connections, stats and jobs."""

import os

from django.utils import timezone

from api.hashing import hash_secret
from routing.models import Job
from stats.models import Kind, SizeBin
from stats.tests.factories import live_process, make_connection, make_worker, new_identity
from workers.models import Connection, Worker

__all__ = ["new_identity", "live_process", "make_connection", "make_worker", "connect", "measure", "make_job"]


def connect(*, auth_key: str = "", models: tuple[str, ...] = (), busy: bool = False, **fields) -> Worker:
    """A worker with one live connection advertising `models`."""
    worker = make_worker(owner_key_hash=hash_secret(auth_key), **fields)
    connection = make_connection(worker=worker, process=live_process(), capabilities=["llama-infer"])
    Connection.objects.filter(pk=connection.pk).update(
        advertised_models=list(models), state=Connection.State.BUSY if busy else Connection.State.FREE
    )
    return worker


def measure(worker: Worker | None, *, bin: int, seconds_per_token: float) -> None:
    SizeBin.objects.create(worker=worker, kind=Kind.TEXT, bin=bin, value=seconds_per_token, count=3, updated_at=timezone.now())


def make_job(*, worker: Worker | None = None, **fields) -> Job:
    defaults = {"public_id": f"chatcmpl-{os.urandom(8).hex()}", "kind": "chat", "model": "m", "status": "succeeded"}
    return Job.objects.create(worker=worker, **{**defaults, **fields})
