"""Canaries: a prompt whose temperature-0 answer a trusted worker gave, sent to the others and compared."""

import time
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from billing.tests.conftest import tag
from conftest import BYPASS, wait_for
from routing.models import Job
from testkit.server import QueenProcess
from trust import canaries
from trust.models import Canary, CanaryRun, TrustEvent
from workers.models import TrustState

from .conftest import MODEL, liar, set_state, state_of, wait_state

PROMPT = "Name three colours."
KNOWN = "Red, green and blue are three colours."


@pytest.fixture(scope="module")
def canary_queen(server_env):
    """A server that sends canaries as soon and as often as its workers are free."""
    env = {**server_env, "TRUST_CANARY_SHARE": "1", "TRUST_CANARY_INTERVAL": "0.2", "TRUST_CANARY_PROMPTS": PROMPT}
    process = QueenProcess(env, name="test-canary-queen").start()
    httpx.get(f"{process.url}/worker/stats", timeout=10)  # the first request starts its loops
    yield process
    process.stop()


@pytest.fixture
def model(db_access):
    """A model of the test's own, so that the known answers of other tests do not count."""
    return f"canary-{tag()}/bees-GGUF:Q4_K_M"


@pytest.fixture
def trusted(canary_queen, start_worker, model):
    worker = start_worker(canary_queen.ws_url, models=[model], script=liar(KNOWN), auth_key=f"trusted-{tag()}")
    set_state(worker, TrustState.TRUSTED)
    return worker


def canary_jobs(worker) -> list[dict]:
    return [j for j in worker.jobs if j["openai_req"]["messages"][0]["content"] == PROMPT]


def test_the_known_answer_comes_from_a_trusted_worker_and_an_honest_one_passes(canary_queen, start_worker, trusted, model):
    honest = start_worker(canary_queen.ws_url, models=[model], script=liar(KNOWN), auth_key=f"honest-{tag()}")
    run = wait_for(lambda: CanaryRun.objects.filter(worker__identity=honest.identity).first(), what="a canary run")
    assert run.passed and run.agreement == 1.0
    assert Canary.objects.get(model=model).answer == KNOWN
    assert Canary.objects.get(model=model).answered_by.identity == trusted.identity
    assert state_of(honest) == TrustState.NEW
    # Never billed, never in the jobs or the stats.
    assert not Job.objects.filter(worker__identity=honest.identity).exists()


def test_a_canary_looks_like_an_ordinary_chat_request_on_the_wire(canary_queen, start_worker, trusted, model):
    honest = start_worker(canary_queen.ws_url, models=[model], script=liar(KNOWN), auth_key=f"honest-{tag()}")
    [canary] = wait_for(lambda: canary_jobs(honest)[:1], what="a canary job")
    ordinary = httpx.post(
        f"{canary_queen.url}/v1/chat/completions", headers={"Authorization": f"Bearer {BYPASS}"}, timeout=30,
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "max_tokens": 32,
              "gpu_filter": {"pubkey": honest.identity}},
    )
    assert ordinary.status_code == 200, ordinary.text
    [job] = [j for j in honest.jobs if j["openai_req"]["messages"][0]["content"] == "hi"]
    assert canary["openai_url"] == job["openai_url"]
    assert set(canary["openai_req"]) == set(job["openai_req"])
    assert canary["openai_req"]["gpu_filter"]["capabilities"] == ["llama-infer"]
    assert {k: v for k, v in canary["openai_req"].items() if k not in ("messages", "gpu_filter")} == {
        k: v for k, v in job["openai_req"].items() if k not in ("messages", "gpu_filter")
    }


def test_a_worker_that_answers_something_else_is_quarantined_by_canaries(canary_queen, start_worker, trusted, model):
    cheat = start_worker(canary_queen.ws_url, models=[model], script=liar("zebra quantum velvet lantern"), auth_key=f"cheat-{tag()}")
    wait_state(cheat, TrustState.QUARANTINED)
    events = TrustEvent.objects.filter(worker__identity=cheat.identity).order_by("created_at")
    assert [(e.kind, e.to_state) for e in events] == [("canary", "suspect"), ("canary", "quarantined")]
    assert "canary" in events.last().detail
    runs = CanaryRun.objects.filter(worker__identity=cheat.identity)
    assert runs.count() == 2 and not any(r.passed for r in runs)
    assert all(r.answer == "zebra quantum velvet lantern" for r in runs)
    # Quarantined: no more canaries (nor any job); the trusted worker never gets any.
    time.sleep(1)
    assert len(canary_jobs(cheat)) == 2
    assert not CanaryRun.objects.filter(worker__identity=trusted.identity).exists()


def test_without_a_trusted_worker_no_canary_is_sent(canary_queen, start_worker, model):
    lonely = start_worker(canary_queen.ws_url, models=[model], script=liar("anything"), auth_key=f"lonely-{tag()}")
    time.sleep(1)  # five ticks
    assert not canary_jobs(lonely) and not Canary.objects.filter(model=model).exists()


def test_agreement_compares_words_in_order():
    assert canaries.agreement(KNOWN, KNOWN) == 1.0
    assert canaries.agreement(KNOWN, "red green and blue are three colours") == 1.0  # case and punctuation
    assert 0.5 < canaries.agreement(KNOWN, "Red, green and blue are the colours of light.") < 1
    assert canaries.agreement(KNOWN, "zebra quantum velvet lantern") == 0.0


def test_the_next_canary_waits_so_canaries_take_at_most_their_share():
    now = timezone.now()
    assert canaries.next_due(last_at=now, last_seconds=2.0, share=0.02) == now + timedelta(seconds=100)
    assert canaries.next_due(last_at=now, last_seconds=0.0, share=0.02) == now
