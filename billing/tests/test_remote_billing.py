"""A remote BILLING_URL: the original's commands plus a secret and usage, delivered from an outbox."""

import httpx
import openai
import pytest

from billing.models import OutboxMessage
from billing.tests.billing_server import BillingServer
from billing.tests.conftest import BILLING_SECRET, HI, MODEL, tag
from conftest import BYPASS, wait_for
from routing.models import Job

WORKER_AUTH_KEY = "worker-auth-key-that-must-never-leak-7f3a"


@pytest.fixture
def paid_worker(remote_queen, start_worker):
    """A proven worker on the remote-billing server with an auth key and a payout address."""
    capability = tag()
    worker = start_worker(remote_queen.ws_url, auth_key=WORKER_AUTH_KEY, ln_address="worker@ln.example", capabilities=["llama-infer", capability])
    worker.extra = {"gpu_filter": {"capabilities": [capability]}}
    proof = api(remote_queen, BYPASS).chat.completions.create(model=MODEL, messages=HI, extra_body=worker.extra)
    wait_for(lambda: Job.objects.filter(public_id=proof.id, proof_of_work=True).exists(), what="proof of work")
    return worker


def api(queen, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{queen.url}/v1", api_key=token, max_retries=0, timeout=30)


def completes_for(server: BillingServer, job_id: str):
    return [r for r in server.commands("complete") if r.body["job_id"] == job_id]


def test_the_remote_commands_carry_the_secret_and_the_usage(remote_queen, billing_server, paid_worker):
    token = f"user-token-{tag()}"
    replies = [api(remote_queen, token).chat.completions.create(model=MODEL, messages=HI, extra_body=paid_worker.extra) for _ in range(2)]
    [check] = [r for r in billing_server.commands("check") if r.body["bill_to_token"] == token]  # cached after the first
    assert check.body == {"command": "check", "bill_to_token": token}
    assert check.headers["Authorization"] == f"Bearer {BILLING_SECRET}"
    [complete] = wait_for(lambda: completes_for(billing_server, replies[0].id), what="complete delivered")
    assert complete.headers["Authorization"] == f"Bearer {BILLING_SECRET}"
    body = complete.body
    assert body["bill_to_token"] == token and body["pay_to_lnurl"] == "worker@ln.example"
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11, "images": 0, "estimated": False}
    assert body["model"] == MODEL and body["kind"] == "chat" and body["duration"] > 0
    assert "pay_to_auth" not in body and WORKER_AUTH_KEY.encode() not in complete.raw
    wait_for(lambda: completes_for(billing_server, replies[1].id), what="second complete delivered")
    delivered = wait_for(lambda: OutboxMessage.objects.filter(job__public_id=replies[0].id, state="delivered").first(), what="row delivered")
    assert delivered.payload["bill_to_token"] == ""  # the caller's token is not kept once sent


def test_the_outbox_delivers_after_the_billing_server_comes_back(remote_queen, billing_server, paid_worker):
    token = f"user-token-{tag()}"
    api(remote_queen, token).chat.completions.create(model=MODEL, messages=HI, extra_body=paid_worker.extra)  # check cached
    billing_server.stop()
    try:
        reply = api(remote_queen, token).chat.completions.create(model=MODEL, messages=HI, extra_body=paid_worker.extra)
        row = wait_for(lambda: OutboxMessage.objects.filter(job__public_id=reply.id, attempts__gte=2).first(), what="failed attempts")
        assert row.state == "pending" and "unreachable" in row.last_error
        assert not completes_for(billing_server, reply.id)
    finally:
        billing_server.start()
    [complete] = wait_for(lambda: completes_for(billing_server, reply.id), timeout=15, what="complete delivered after the outage")
    assert complete.body["usage"]["completion_tokens"] == 4
    wait_for(lambda: OutboxMessage.objects.get(job__public_id=reply.id).state == "delivered", what="row delivered")


def test_a_token_the_backend_refuses_is_401_and_one_without_funds_is_429(remote_queen, billing_server, paid_worker):
    unknown, broke = f"unknown-{tag()}", f"broke-{tag()}"
    billing_server.accounts[unknown] = {"ok": False}
    billing_server.accounts[broke] = {"ok": False, "user_id": "u2"}
    with pytest.raises(openai.AuthenticationError):
        api(remote_queen, unknown).chat.completions.create(model=MODEL, messages=HI, extra_body=paid_worker.extra)
    with pytest.raises(openai.RateLimitError) as raised:
        api(remote_queen, broke).chat.completions.create(model=MODEL, messages=HI, extra_body=paid_worker.extra)
    assert raised.value.body["code"] == "insufficient_quota"
    assert len(paid_worker.jobs) == 1  # only its proof of work: no worker was claimed


def test_the_bypass_token_is_never_billed(remote_queen, billing_server, paid_worker):
    reply = api(remote_queen, BYPASS).chat.completions.create(model=MODEL, messages=HI, extra_body=paid_worker.extra)
    wait_for(lambda: Job.objects.filter(public_id=reply.id).exists(), what="job recorded")
    assert not OutboxMessage.objects.filter(job__public_id=reply.id).exists()
    assert not [r for r in billing_server.received if r.body.get("bill_to_token") == BYPASS]


def test_no_response_or_log_line_carries_a_workers_auth_key(remote_queen, billing_server, paid_worker):
    token = f"user-token-{tag()}"
    responses = [
        httpx.post(f"{remote_queen.url}/v1/chat/completions", json={"model": MODEL, "messages": HI, **paid_worker.extra}, headers={"Authorization": f"Bearer {token}"}),
        httpx.post(f"{remote_queen.url}/v1/chat/completions", json={"model": MODEL, "messages": HI, "stream": True, **paid_worker.extra}, headers={"Authorization": f"Bearer {token}"}),
        httpx.get(f"{remote_queen.url}/v1/usage", headers={"Authorization": f"Bearer {token}"}),
        httpx.get(f"{remote_queen.url}/worker/stats"),
        httpx.get(f"{remote_queen.url}/worker/detail", headers={"Authorization": f"Bearer {token}"}),
    ]
    assert [r.status_code for r in responses[:3]] == [200, 200, 200]
    wait_for(lambda: len(billing_server.commands("complete")) >= 2, what="completes sent")
    for response in responses:
        assert WORKER_AUTH_KEY not in response.text
    for received in billing_server.received:
        assert WORKER_AUTH_KEY.encode() not in received.raw
    assert WORKER_AUTH_KEY not in remote_queen.log_path.read_text()
