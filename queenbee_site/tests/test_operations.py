"""What an operator relies on: health, readiness, metrics, logs, client addresses (deploy checks: test_deploy_checks.py)."""

import json

import httpx
import openai
import pytest

from conftest import BYPASS, connection_count, wait_for
from runtime.client_ip import parse_networks, resolve
from testkit.fake_worker import FakeWorker
from testkit.server import QueenProcess

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
METRICS_TOKEN = "test-metrics-token"
SECRETS = {
    "prompt": "the secret prompt 4711",
    "auth_key": "owner-auth-key-0815",
    "ln_address": "payout-address@secret.example",
}


@pytest.fixture(scope="module")
def ops_queen(server_env):
    env = {**server_env, "METRICS_TOKEN": METRICS_TOKEN, "LOG_LEVEL": "DEBUG", "LOG_FORMAT": "json"}
    process = QueenProcess(env, name="ops-queen").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def served(ops_queen, django_db_blocker):
    """One worker with secrets in its connect message serves two requests (one streamed) with an API key."""
    from api.models import ApiKey

    with django_db_blocker.unblock():
        _, api_key = ApiKey.create_key(name="ops-test")
        worker = FakeWorker(ops_queen.ws_url, auth_key=SECRETS["auth_key"], ln_address=SECRETS["ln_address"]).start()
        wait_for(lambda: connection_count(worker.identity) == 1, what="registration")
    client = openai.OpenAI(base_url=f"{ops_queen.url}/v1", api_key=api_key, max_retries=0)
    messages = [{"role": "user", "content": SECRETS["prompt"]}]
    pin = {"gpu_filter": {"pubkey": worker.pubkey}}
    client.chat.completions.create(model=MODEL, messages=messages, extra_body=pin)
    list(client.chat.completions.create(model=MODEL, messages=messages, extra_body=pin, stream=True))
    FakeWorker(ops_queen.ws_url).start(first_frame="not json").wait_closed()
    return {"worker": worker, "api_key": api_key}


def scrape(queen) -> str:
    response = httpx.get(f"{queen.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    return response.text


def log_events(queen) -> list[dict]:
    lines = queen.log_path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


# --- Health ------------------------------------------------------------------------------


def test_healthz_says_the_process_is_up(queen):
    response = httpx.get(f"{queen.url}/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_checks_the_database_the_channel_layer_and_the_cache(queen):
    response = httpx.get(f"{queen.url}/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "channel_layer": "ok", "cache": "ok"}}


def test_readyz_fails_when_redis_is_unreachable(server_env):
    env = {**server_env, "REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens on port 1
    process = QueenProcess(env, name="no-redis-queen").start()
    try:
        response = httpx.get(f"{process.url}/readyz", timeout=20)
    finally:
        process.stop()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["checks"]["database"] == "ok"
    assert body["checks"]["channel_layer"] == "failing" and body["checks"]["cache"] == "failing"


# --- Metrics ---------------------------------------------------------------------------------


def test_metrics_are_off_without_a_token(queen):
    response = httpx.get(f"{queen.url}/metrics")
    assert response.status_code == 404 and "METRICS_TOKEN" in response.json()["error"]["message"]


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {METRICS_TOKEN}"])
def test_metrics_need_the_token(ops_queen, header):
    response = httpx.get(f"{ops_queen.url}/metrics", headers={"Authorization": header} if header else {})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_metrics_count_requests_workers_and_jobs(ops_queen, served):
    text = scrape(ops_queen)
    for line in (
        'queenbee_http_requests_total{endpoint="v1/chat/completions",method="POST",status="200"} 2.0',
        'queenbee_workers_connected{capability="llama-infer"} 1.0',
        'queenbee_workers_busy{capability="llama-infer"} 0.0',
        "queenbee_waiting_requests 0.0",
        "queenbee_worker_connects_total 1.0",
        'queenbee_worker_refusals_total{reason="bad_message"} 1.0',
        'queenbee_job_duration_seconds_count{kind="chat",status="succeeded"} 2.0',
        'queenbee_time_to_first_token_seconds_count{kind="chat"} 2.0',
        'queenbee_tokens_per_second_count{kind="chat"} 2.0',
        'queenbee_queue_wait_seconds_count{kind="chat"} 2.0',
    ):
        assert line in text, line
    assert "process_resident_memory_bytes" in text


# --- Logs -----------------------------------------------------------------------------------------


def test_each_request_and_job_has_one_structured_line(ops_queen, served):
    events = wait_for(lambda: [e for e in log_events(ops_queen) if e["event"] == "job"] and log_events(ops_queen), what="job lines")
    requests = [e for e in events if e["event"] == "request" and e["endpoint"] == "v1/chat/completions"]
    jobs = [e for e in events if e["event"] == "job"]
    assert len(requests) == 2 and all(r["status"] == 200 and r["ms"] >= 0 and r["request_id"] for r in requests)
    assert len(jobs) == 2
    for job in jobs:
        assert job["job"].startswith("chatcmpl-") and job["model"] == MODEL and job["status"] == "succeeded"
        assert isinstance(job["worker"], int) and job["first_token_ms"] >= 0 and job["total_ms"] >= 0
        assert job["request_id"] in {r["request_id"] for r in requests}
    assert {job["stream"] for job in jobs} == {True, False}


def test_worker_connects_and_refusals_are_logged_by_database_id(ops_queen, served, db_access):
    from workers.models import Worker

    events = log_events(ops_queen)
    connect = next(e for e in events if e["event"] == "worker_connect")
    assert connect["worker"] == Worker.objects.get(identity=served["worker"].identity).pk
    assert connect["capabilities"] == ["llama-infer"] and connect["ip"] == "127.0.0.1" and connect["signed"] is True
    refusal = next(e for e in events if e["event"] == "worker_refused")
    assert refusal["code"] == 4002 and refusal["reason"] == "frame is not JSON"


def test_a_worker_disconnect_is_logged(ops_queen, served):
    served["worker"].stop()
    line = wait_for(lambda: next((e for e in log_events(ops_queen) if e["event"] == "worker_disconnect"), None), what="disconnect line")
    assert line["seconds"] >= 0 and isinstance(line["worker"], int)


def test_under_uvicorn_every_log_line_follows_log_format(ops_queen, served):
    if ops_queen.server != "uvicorn":
        pytest.skip("daphne's access log writes plain lines of its own (README: --access-log)")
    wait_for(lambda: any(e["event"] == "job" for e in log_events(ops_queen)), what="job lines")
    lines = [line for line in ops_queen.log_path.read_text().splitlines() if line.strip()]
    not_json = [line for line in lines if not line.startswith("{")]
    assert not not_json, not_json[:3]
    loggers = {json.loads(line)["logger"] for line in lines}
    assert "uvicorn.error" in loggers and "uvicorn.access" not in loggers  # Queenbee logs requests itself


def test_logs_never_hold_a_prompt_a_key_or_a_payout_address(ops_queen, served):
    wait_for(lambda: any(e["event"] == "job" for e in log_events(ops_queen)), what="job lines")
    text = ops_queen.log_path.read_text()
    for name, secret in {**SECRETS, "api_key": served["api_key"], "bypass": BYPASS, "pubkey": served["worker"].pubkey}.items():
        assert secret not in text, f"the log holds the {name}"


# --- Client addresses ----------------------------------------------------------------------------------


TRUSTED = parse_networks(["10.0.0.0/8", "127.0.0.1"])


@pytest.mark.parametrize(
    "peer, forwarded_for, client",
    [
        ("203.0.113.5", "1.2.3.4", "203.0.113.5"),  # not a proxy of ours: header ignored
        ("127.0.0.1", "", "127.0.0.1"),
        ("127.0.0.1", "198.51.100.7", "198.51.100.7"),
        ("127.0.0.1", "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # the client's own claim is skipped
        ("127.0.0.1", "198.51.100.7, 10.1.2.3", "198.51.100.7"),  # through two proxies of ours
        ("127.0.0.1", "10.1.2.3, 10.4.5.6", "10.1.2.3"),  # all trusted: the first one
        ("127.0.0.1", "not-an-address", "127.0.0.1"),
    ],
)
def test_x_forwarded_for_is_honoured_only_from_trusted_proxies(peer, forwarded_for, client):
    assert resolve(peer, forwarded_for, TRUSTED) == client


def test_with_no_trusted_proxies_the_header_is_ignored():
    assert resolve("127.0.0.1", "198.51.100.7", ()) == "127.0.0.1"


# Last: its failed request and job must not count in the ops_queen tests above.
def test_metrics_count_the_punishments_of_a_failing_worker(ops_queen, django_db_blocker):
    def fails(job):
        yield {"error": "out of memory", "error_type": "RuntimeError"}

    with django_db_blocker.unblock():
        worker = FakeWorker(ops_queen.ws_url, script=fails).start()
        wait_for(lambda: connection_count(worker.identity) == 1, what="registration")
    try:
        client = openai.OpenAI(base_url=f"{ops_queen.url}/v1", api_key=BYPASS, max_retries=0)
        with pytest.raises(openai.APIError):
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"gpu_filter": {"pubkey": worker.pubkey}})
        wait_for(lambda: 'queenbee_worker_punishments_total{reason="error"}' in scrape(ops_queen), what="the punishment counted")
    finally:
        worker.stop()
