"""With a remote BILLING_URL, a job under verification is billed only once it is not refuted,
and (with BILLING_REMOTE_VERIFY_PAYOUTS) its verifier's payout is told to the backend."""

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


def completes_for(server: BillingServer, job_id: str, kind: str = "chat"):
    return [r for r in server.commands("complete") if r.body["job_id"] == job_id and r.body["kind"] == kind]


def remote_verifier(remote_queen, start_worker, lane):
    worker = start_worker(
        remote_queen.ws_url, capabilities=["llama-infer"], features=["verify"], script=verifier_script, auth_key=f"verifier-{lane}",
        ln_address=f"verifier-{lane}@ln.example",
    )
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


def test_a_verifiers_payout_is_a_complete_that_bills_nobody(remote_queen, billing_server, start_worker, lane):
    remote_verifier(remote_queen, start_worker, lane)
    start_worker(remote_queen.ws_url, capabilities=["llama-infer", lane], script=liar("a short honest answer"), auth_key=f"honest-{lane}")
    token = f"user-{tag()}"
    proof = ask(remote_queen, token, lane)
    reply = ask(remote_queen, token, lane)
    [payout] = wait_for(lambda: completes_for(billing_server, reply.id, kind="verify"), what="the verifier's payout delivered")
    assert payout.body["bill_to_token"] == "" and payout.body["pay_to_lnurl"] == f"verifier-{lane}@ln.example"
    assert payout.body["verdict"] == "passed" and payout.body["pay_worker"] is True
    # What the fake verifier scored: 5 prompt tokens and the answer's 4 words.
    assert payout.body["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9, "images": 0, "estimated": False}
    assert "pay_to_auth" not in payout.body
    # The backend has it; the row says so once the sender has its answer.
    row = wait_for(lambda: OutboxMessage.objects.filter(verified_job__public_id=reply.id, state="delivered").first(), what="the payout's row delivered")
    assert row.job_id is None
    # The backend never billed the free proof of work, so it pays no verifier for it.
    assert Verification.objects.get(job_id=proof.id).status == "passed"
    assert not completes_for(billing_server, proof.id, kind="verify")


def test_the_verifier_that_refuted_a_job_is_paid_while_the_job_is_not_billed(remote_queen, billing_server, start_worker, lane):
    remote_verifier(remote_queen, start_worker, lane)
    worker = start_worker(remote_queen.ws_url, capabilities=["llama-infer", lane], script=liar("zebra quantum velvet lantern"), auth_key=f"liar-{lane}")
    token = f"user-{tag()}"
    ask(remote_queen, token, lane)
    wait_state(worker, TrustState.SUSPECT)
    reply = ask(remote_queen, token, lane)
    [payout] = wait_for(lambda: completes_for(billing_server, reply.id, kind="verify"), what="the verifier's payout delivered")
    assert payout.body["verdict"] == "refuted" and payout.body["bill_to_token"] == ""
    assert not completes_for(billing_server, reply.id)
