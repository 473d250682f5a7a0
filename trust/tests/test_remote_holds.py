"""With a remote BILLING_URL, a job under verification is billed only once it is not refuted."""

import openai

from billing.models import OutboxMessage
from billing.tests.billing_server import BillingServer
from billing.tests.conftest import tag
from conftest import wait_for
from trust.models import Verification
from workers.models import TrustState

from .conftest import HI, MODEL, liar, set_state, verifier_script, wait_state


def ask(queen, token: str, lane: str):
    client = openai.OpenAI(base_url=f"{queen.url}/v1", api_key=token, max_retries=0, timeout=30)
    return client.chat.completions.create(model=MODEL, messages=HI, extra_body={"gpu_filter": {"capabilities": [lane]}})


def completes_for(server: BillingServer, job_id: str):
    return [r for r in server.commands("complete") if r.body["job_id"] == job_id]


def remote_verifier(remote_queen, start_worker, lane):
    worker = start_worker(remote_queen.ws_url, capabilities=["llama-infer"], features=["verify"], script=verifier_script, auth_key=f"verifier-{lane}")
    set_state(worker, TrustState.TRUSTED)
    return worker


def test_a_checked_job_is_sent_to_the_backend_after_it_passes(remote_queen, billing_server, start_worker, lane):
    remote_verifier(remote_queen, start_worker, lane)
    start_worker(remote_queen.ws_url, capabilities=["llama-infer", lane], script=liar("a short honest answer"), auth_key=f"honest-{lane}")
    token = f"user-{tag()}"
    ask(remote_queen, token, lane)  # the free proof of work
    reply = ask(remote_queen, token, lane)
    wait_for(lambda: Verification.objects.filter(job_id=reply.id, status="passed").exists(), what="verdict")
    [complete] = wait_for(lambda: completes_for(billing_server, reply.id), what="complete delivered after the verdict")
    assert complete.body["bill_to_token"] == token
    # The verifier's token count is the one billed (its fake model counts words: 4).
    assert complete.body["usage"]["completion_tokens"] == 4


def test_a_refuted_job_is_never_billed_by_the_backend(remote_queen, billing_server, start_worker, lane):
    remote_verifier(remote_queen, start_worker, lane)
    worker = start_worker(remote_queen.ws_url, capabilities=["llama-infer", lane], script=liar("zebra quantum velvet lantern"), auth_key=f"liar-{lane}")
    token = f"user-{tag()}"
    ask(remote_queen, token, lane)  # proof of work: refuted, new → suspect
    wait_state(worker, TrustState.SUSPECT)
    reply = ask(remote_queen, token, lane)
    wait_state(worker, TrustState.QUARANTINED)
    row = wait_for(lambda: OutboxMessage.objects.filter(job__public_id=reply.id, state="gave_up").first(), what="dropped complete")
    assert row.last_error.startswith("not billed: refuted by verification")
    assert row.payload["bill_to_token"] == ""
    assert not completes_for(billing_server, reply.id)
