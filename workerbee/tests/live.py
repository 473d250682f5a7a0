"""Running the real worker against the live Queenbee of the `queen` fixture."""

import threading
import time
from contextlib import contextmanager
from pathlib import Path

from workerbee.config import load_config
from workerbee.connection import Worker


def wait_for(predicate, *, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def registered(identity: str) -> bool:
    from workers.models import Connection

    return Connection.objects.filter(worker__identity=identity).exists()


def recorded_job(public_id: str):
    from routing.models import Job

    return wait_for(lambda: Job.objects.filter(public_id=public_id).first(), what=f"job {public_id} recorded")


@contextmanager
def live_worker(queen, django_db_blocker, root: Path, *extra: str):
    """A Worker thread connected to `queen`, registered before it is yielded."""
    config = load_config(
        [
            "--queen-url", queen.ws_url,
            "--config", str(root / "config.json"),
            "--models-dir", str(root / "models"),
            "--hf-cache", str(root / "hf"),
            "--threads", "1",
            *extra,
        ],
        {},
    )
    worker = Worker(config)
    thread = threading.Thread(target=worker.run, name="workerbee-live", daemon=True)
    thread.start()
    try:
        with django_db_blocker.unblock():
            wait_for(lambda: registered(worker.identity), timeout=60, what="worker registration")
        yield worker
    finally:
        worker.stop()
        thread.join(30)
        with django_db_blocker.unblock():
            wait_for(lambda: not registered(worker.identity), what="worker removal")
