"""Faults caused for real: Redis restarted, PostgreSQL cut off, a process killed."""

import os
import shutil
import subprocess
import threading
import time

import httpx
import openai
import pytest

from conftest import BYPASS, connection_count, wait_for
from testkit.fake_worker import Delay, FakeWorker, chat_reply
from testkit.server import QueenProcess, free_port
from testkit.tcp_proxy import TcpProxy

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
HI = [{"role": "user", "content": "hi"}]
FAST_LIVENESS = {"PROCESS_HEARTBEAT_INTERVAL": "0.3", "PROCESS_GRACE": "1.5"}
ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgres")


def ask(process, worker, **extra):
    return httpx.post(
        f"{process.url}/v1/chat/completions",
        json={"model": MODEL, "messages": HI, "gpu_filter": {"pubkey": worker.pubkey}, **extra},
        headers={"Authorization": f"Bearer {BYPASS}"},
        timeout=30,
    )


def assert_clean_failure(response):
    assert response.status_code in (502, 503, 504), response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


class RedisServer:
    def __init__(self):
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout.strip() == b"PONG", what="redis up")
        return self

    def kill(self):
        self.proc.kill()
        self.proc.wait()


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")
def test_requests_recover_after_redis_restarts_without_restarting_queenbee(server_env, db_access):
    redis = RedisServer().start()
    process = QueenProcess({**server_env, "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0"}, name="redis-fault").start()
    worker = FakeWorker(process.ws_url, reconnect=True).start()
    try:
        wait_for(lambda: connection_count(worker.identity) == 1, what="registration")
        assert ask(process, worker).status_code == 200
        redis.kill()
        during = ask(process, worker, timeout=3)
        assert_clean_failure(during)
        redis.start()
        # New requests succeed within seconds, with no restart of Queenbee.
        recovered = wait_for(lambda: ask(process, worker, timeout=3).status_code == 200, timeout=20, interval=0.5, what="recovery")
        assert recovered
    finally:
        worker.stop()
        process.stop()
        redis.kill()


@pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL (DATABASE_URL)")
def test_postgres_briefly_unavailable_gives_503s_then_recovers(server_env, db_access):
    from django.db import connections

    db = connections["default"].settings_dict
    proxy = TcpProxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))
    url = f"postgres://{db.get('USER') or 'postgres'}@127.0.0.1:{proxy.port}/{db['NAME']}"
    process = QueenProcess({**server_env, "DATABASE_URL": url}, name="pg-fault").start()
    # Like the original worker, it connects again if its socket drops (seen once
    # in CI during the outage, cause not found; see the issue note).
    worker = FakeWorker(process.ws_url, reconnect=True).start()
    try:
        wait_for(lambda: connection_count(worker.identity) == 1, what="registration")
        assert ask(process, worker).status_code == 200
        proxy.cut()
        during = ask(process, worker)
        assert during.status_code == 503 and during.json()["error"]["code"] == "database_unavailable"
        proxy.restore()
        wait_for(lambda: ask(process, worker).status_code == 200, timeout=20, interval=0.5, what="recovery")
    finally:
        worker.stop()
        process.stop()


@pytest.mark.cluster
@pytest.mark.skipif(not (ON_POSTGRES and os.environ.get("REDIS_URL")), reason="needs PostgreSQL and Redis")
def test_a_killed_process_fails_only_its_own_clients_and_its_workers_move(server_env, db_access):
    env = {**server_env, **FAST_LIVENESS}
    doomed = QueenProcess(env, name="fault-doomed").start()
    survivor = QueenProcess(env, name="fault-survivor").start()
    slow = lambda job: iter([Delay(1.0), chat_reply("slow answer")])  # noqa: E731
    mover = FakeWorker(doomed.ws_url, script=slow, reconnect=True, fallback_urls=[survivor.ws_url], capabilities=["llama-infer", "fault-move"]).start()
    bystander = FakeWorker(survivor.ws_url, capabilities=["llama-infer", "fault-bystander"]).start()
    outcomes: list[str] = []
    try:
        for w in (mover, bystander):
            wait_for(lambda w=w: connection_count(w.identity) == 1, what="registration")

        def call_doomed():
            try:
                ask(doomed, mover)
                outcomes.append("answered")
            except httpx.HTTPError:
                outcomes.append("connection error")

        callers = [threading.Thread(target=call_doomed) for _ in range(3)]  # one runs, two wait in line
        for t in callers:
            t.start()
        time.sleep(0.5)
        doomed.kill()
        for t in callers:
            t.join(10)
        assert outcomes == ["connection error"] * 3
        # The bystander's process never noticed.
        assert ask(survivor, bystander).status_code == 200
        # The worker reconnects to the other process and serves there.
        wait_for(lambda: ask(survivor, mover).status_code == 200, timeout=20, interval=0.5, what="worker served from the survivor")
        assert mover.connects >= 2
    finally:
        for w in (mover, bystander):
            w.stop()
        for p in (doomed, survivor):
            p.stop()
