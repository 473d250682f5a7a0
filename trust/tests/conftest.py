"""Trust fixtures: a fake verifier that scores text like a model would, workers by trust state."""

import re
from typing import Any, Iterable

import pytest

from billing.tests.conftest import make_account  # noqa: F401 (a fixture)
from billing.tests.conftest import tag
from conftest import wait_for
from testkit.fake_worker import chat_reply, default_script
from workers.models import TrustState, Worker

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
HI = [{"role": "user", "content": "hi"}]
# What the fake verifier's "model" would say: every other word is implausible.
PLAUSIBLE = {"hello", "from", "the", "worker", "a", "short", "honest", "answer"}
LIKELY, UNLIKELY = [-0.4, 0, 0.0, -0.2], [-13.0, 900, 0.999, -0.2]


def scores_of(text: str) -> list[list[float]]:
    return [LIKELY if word.lower() in PLAUSIBLE else UNLIKELY for word in re.findall(r"\w+", text)]


def verifier_script(job: dict[str, Any]) -> Iterable[Any]:
    """Answers `/queenbee/verify` as workerbee's verifier does (a word is a token here)."""
    if job["openai_url"] != "/queenbee/verify":
        yield from default_script(job)
        return
    req = job["openai_req"]
    tokens = scores_of(req["completion"])
    yield {"verification": {"prompt_tokens": 5, "completion_tokens": len(tokens), "tokens": tokens, "end": LIKELY, "truncated": False}}


def liar(text: str, **usage):
    def script(job):
        reply = chat_reply(text)
        reply["usage"].update(usage)
        yield reply

    return script


def set_state(worker, state: str) -> None:
    Worker.objects.filter(identity=worker.identity).update(trust_state=state)


def state_of(worker) -> str:
    return Worker.objects.get(identity=worker.identity).trust_state


@pytest.fixture
def lane():
    """A capability of the test's own, so its requests meet only its workers."""
    return tag()


@pytest.fixture
def verifier(start_worker, db_access, lane):
    """An operator-trusted worker announcing `verify`, outside the test's lane (so
    callers' requests do not reach it; verification jobs do)."""
    worker = start_worker(capabilities=["llama-infer"], features=["verify"], script=verifier_script, auth_key=f"verifier-{lane}")
    set_state(worker, TrustState.TRUSTED)
    return worker


def verify_jobs(worker) -> list[dict]:
    return [j for j in worker.jobs if j["openai_url"] == "/queenbee/verify"]


def wait_state(worker, state: str, timeout: float = 10) -> None:
    wait_for(lambda: state_of(worker) == state, timeout=timeout, what=f"trust state {state}")


from billing.tests.conftest import billing_server, remote_queen  # noqa: E402,F401 (fixtures, for the remote holds)
