"""The soak run (bench/soak.py) as part of the suite, on PostgreSQL + Redis."""

import os
import subprocess
import sys

import pytest

from testkit.server import ROOT

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")),
        reason="needs DATABASE_URL (PostgreSQL) and REDIS_URL",
    ),
]
SECONDS = os.environ.get("SOAK_SECONDS", "60")


@pytest.mark.timeout(int(SECONDS) + 120)
def test_a_soak_with_workers_killed_loses_nothing(server_env):
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--seconds", SECONDS, "--clients", "64", "--workers", "8"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": server_env["DATABASE_URL"], "REDIS_URL": server_env["REDIS_URL"]},
        capture_output=True,
        text=True,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "misdelivered 0  hung 0  leaked busy connections or waiters 0" in result.stdout


@pytest.mark.timeout(int(SECONDS) + 180)
@pytest.mark.parametrize("mode", ["embedded", "cluster"])
def test_streams_whose_workers_are_killed_mid_answer_arrive_whole(server_env, mode):
    extra = ["--embedded"] if mode == "embedded" else []
    env = {**os.environ, "DATABASE_URL": server_env["DATABASE_URL"], "REDIS_URL": server_env["REDIS_URL"]}
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--mid-stream", *extra, "--seconds", SECONDS, "--clients", "32", "--workers", "8", "--kill-every", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "crossed 0  duplicated 0  leaked busy connections or waiters 0" in result.stdout
