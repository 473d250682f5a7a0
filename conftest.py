"""Fixtures shared by every app's tests: a real Queenbee server and real websocket workers.

The server is a daphne subprocess on the test database (PostgreSQL + Redis when
DATABASE_URL/REDIS_URL are set, else SQLite and the in-memory layer). Tests read
the database directly through `db_access`; nothing is flushed between tests, so
each test identifies its own rows (its workers' keys, its job ids).
"""

import os
import time

import httpx
import openai
import pytest
from django.conf import settings

from testkit.fake_worker import FakeWorker
from testkit.server import QueenProcess, database_url

BYPASS = "test-bypass-token"

SERVER_ENV = {
    "BYPASS_TOKEN": BYPASS,
    "QUEUE_TIMEOUT": "5",
    "FIRST_TOKEN_TIMEOUT": "10",
    "GAP_TIMEOUT": "10",
    "RETRY_DELAY": "0.05",
    "LOG_LEVEL": "WARNING",
    # Workers in good standing are not sampled for verification, so tests that
    # are not about trust see every earning paid at once (trust/tests sample).
    "TRUST_VERIFY_SHARE": "0",
    "TRUST_TRUSTED_VERIFY_SHARE": "0",
    # Every test worker connects from 127.0.0.1.
    "TRUST_VERIFIER_OTHER_ADDRESS": "false",
    # No canaries take test workers' time (trust/tests start a server that sends them).
    "TRUST_CANARY_SHARE": "0",
}


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """A test database of this run's own: several test runs may share a machine."""
    from pytest_django.fixtures import _set_suffix_to_test_databases

    _set_suffix_to_test_databases(suffix=f"run{os.getpid()}")


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment, django_db_modify_db_settings, django_db_blocker):
    """Create the test database for the server processes.

    pytest-django only creates databases for tests marked `django_db`; ours talk
    to a server process instead, so the database is created here explicitly.
    """
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        config = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    yield
    with django_db_blocker.unblock():
        teardown_databases(config, verbosity=0)


@pytest.fixture(scope="session")
def server_env(django_db_setup) -> dict[str, str]:
    from django.db import connections

    env = {**SERVER_ENV, "DATABASE_URL": database_url(connections["default"].settings_dict)}
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
        # Counters keyed by row ids (rate limits per API key) must not meet
        # another test run's, whose database has the same ids.
        env["CACHE_KEY_PREFIX"] = f"run{os.getpid()}"
    return env


@pytest.fixture(scope="session")
def queen(server_env):
    process = QueenProcess(server_env, name="test-queen").start()
    yield process
    process.stop()


@pytest.fixture
def db_access(django_db_blocker):
    """Read and write the test database shared with the server (no flush afterwards)."""
    with django_db_blocker.unblock():
        yield


def wait_for(predicate, *, timeout: float = 10, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def connection_count(identity: str) -> int:
    from workers.models import Connection

    return Connection.objects.filter(worker__identity=identity).count()


@pytest.fixture
def start_worker(queen, db_access):
    """Start a fake worker (kwargs as FakeWorker) and wait until the server registered it."""
    started: list[FakeWorker] = []

    def start(url: str | None = None, **kwargs) -> FakeWorker:
        worker = FakeWorker(url or queen.ws_url, **kwargs).start()
        started.append(worker)
        if worker.signed:
            wait_for(lambda: connection_count(worker.identity) == 1, what="worker registration")
        return worker

    yield start
    for worker in started:
        worker.stop()
    for worker in started:
        if worker.signed:
            wait_for(lambda w=worker: connection_count(w.identity) == 0, what="worker removal")


@pytest.fixture
def client(queen) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{queen.url}/v1", api_key=BYPASS, max_retries=0, timeout=30)


@pytest.fixture
def http(queen) -> httpx.Client:
    with httpx.Client(base_url=queen.url, headers={"Authorization": f"Bearer {BYPASS}"}, timeout=30) as c:
        yield c
