"""A few rows the stats tests need: workers, live connections, outcomes."""

import os
from datetime import timedelta

from django.utils import timezone

from stats.services import JobOutcome
from workers.models import Connection, ServerProcess, Worker
from workers.signature import public_key_b64


def new_identity(slug: str = "") -> str:
    pubkey = public_key_b64(os.urandom(32))
    return f"{pubkey}:{slug}" if slug else pubkey


def make_worker(*, identity: str | None = None, **fields) -> Worker:
    identity = identity or new_identity()
    pubkey, _, slug = identity.partition(":")
    return Worker.objects.create(identity=identity, pubkey=pubkey, slug=slug, **fields)


def live_process() -> ServerProcess:
    return ServerProcess.objects.create(name=f"stats-test-{os.urandom(4).hex()}", heartbeat_at=timezone.now())


def make_connection(
    *, worker: Worker, process: ServerProcess, capabilities: list[str], gpu_memory_mib: float = 24000
) -> Connection:
    return Connection.objects.create(
        worker=worker,
        process=process,
        channel_name=f"test.chan!{os.urandom(6).hex()}",
        capabilities_text=Connection.capabilities_to_text(capabilities),
        version_key="",
        gpu_memory_mib=gpu_memory_mib,
        ram_bytes=64_000_000_000,
        disk_space_mib=512_000,
    )


def outcome(**fields) -> JobOutcome:
    defaults = {
        "public_id": f"chatcmpl-{os.urandom(8).hex()}",
        "kind": "text",
        "size": 4.2,
        "succeeded": True,
        "started_at": timezone.now() - timedelta(seconds=1),
        "seconds": 1.0,
        "prompt_tokens": 10,
        "completion_tokens": 9,
    }
    return JobOutcome(**{**defaults, **fields})
