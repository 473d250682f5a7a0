"""Canary jobs: prompts whose temperature-0 answer is known from an operator-trusted worker.

A canary is an ordinary chat request on the wire (the same fields a caller's
validated request carries), sent to a worker that is not operator-trusted while
it is free. Its answer is compared with the one a trusted worker gave for the
same model: an answer that shares too little of the known one, word for word in
order, counts against the worker like a refuted job. Canaries are never
recorded as jobs, so they are never billed and never paid, and they do not move
the speed statistics. Each worker's canaries are bounded to TRUST_CANARY_SHARE
of its time: after a canary that took s seconds, the next waits s / share.

The known answers are learned on demand: the first canary for a model is asked
of a trusted worker serving it, and stored (`Canary`); without one, nothing is
sent. The built-in prompts are public (they are in this file): an operator who
wants canaries a cheater cannot recognize sets TRUST_CANARY_PROMPTS.
"""

import difflib
import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from workers.liveness import live_connections
from workers.models import Connection, TrustState, Worker

from . import services
from .models import Canary, CanaryRun, TrustEvent

PROMPTS = (
    "Name the three primary colours.",
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "List the first five prime numbers.",
    "What do bees make?",
    "Say hello in three languages.",
    "What is two plus two?",
    "Describe a cat in one sentence.",
)
# Identities that get canaries: everyone but the operator-trusted (who answer them) and the quarantined.
CHECKED_STATES = (TrustState.NEW, TrustState.SUSPECT, TrustState.VERIFIED)
_rng = random.Random()
WORD = re.compile(r"\w+")


def prompts() -> tuple[str, ...]:
    return tuple(settings.TRUST_CANARY_PROMPTS) or PROMPTS


def request_for(*, model: str, prompt: str) -> dict[str, Any]:
    """The canary's request, as the API's validation leaves an ordinary one (routing.serializers)."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": settings.TRUST_CANARY_MAX_TOKENS,
        "stream": False,
        "gpu_filter": {"capabilities": ["llama-infer"]},
    }


def agreement(known: str, answer: str) -> float:
    """How much of the known answer the worker's answer says, word for word in order (0-1).

    Greedy decoding on other hardware may take another path at a near tie, so
    the answers are compared as word sequences, not for equality.
    """
    a, b = WORD.findall(known.lower()), WORD.findall(answer.lower())
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def next_due(*, last_at: datetime, last_seconds: float, share: float) -> datetime:
    """When a worker's next canary may be sent, keeping canaries to `share` of its time."""
    return last_at + timedelta(seconds=max(last_seconds, 0.0) / share)


# --- Reads and writes for the loop (trust/canary_loop.py) --------------------------------------


@dataclass(frozen=True)
class Target:
    worker_id: int
    identity: str  # unique, never empty: the claim takes this worker and no other
    state: str
    model: str


def due_targets(*, process_id: int | None, limit: int) -> list[Target]:
    """Free workers (on `process_id` when given) due a canary, each with a model it advertises."""
    if settings.TRUST_CANARY_SHARE <= 0:
        return []
    connections = live_connections().filter(state=Connection.State.FREE, is_web=False, worker__trust_state__in=CHECKED_STATES)
    if process_id is not None:
        connections = connections.filter(process_id=process_id)
    rows = connections.values_list("worker_id", "worker__identity", "worker__trust_state", "advertised_models")
    now, targets, seen = timezone.now(), [], set()
    for worker_id, identity, state, models in rows:
        offered = [m for m in models or () if isinstance(m, str) and not m.startswith("user:")]
        if worker_id in seen or not offered or not _due(worker_id, now):
            continue
        seen.add(worker_id)
        targets.append(Target(worker_id, identity, state, _rng.choice(offered)))
        if len(targets) >= limit:
            break
    return targets


def _due(worker_id: int, now: datetime) -> bool:
    last = CanaryRun.objects.filter(worker_id=worker_id).values_list("created_at", "seconds").first()
    return last is None or next_due(last_at=last[0], last_seconds=last[1], share=settings.TRUST_CANARY_SHARE) <= now


def known_canary(*, model: str) -> Canary | None:
    """A known answer for `model`, among the configured prompts (None: none learned yet)."""
    return Canary.objects.filter(model=model, prompt__in=prompts()).order_by("?").first()


def unlearned_prompt(*, model: str) -> str | None:
    learned = set(Canary.objects.filter(model=model).values_list("prompt", flat=True))
    missing = [p for p in prompts() if p not in learned]
    return _rng.choice(missing) if missing else None


def learn(*, model: str, prompt: str, answer: str, worker_id: int) -> Canary:
    try:
        return Canary.objects.create(model=model, prompt=prompt, answer=answer, answered_by_id=worker_id)
    except IntegrityError:  # another process learned it first
        return Canary.objects.get(model=model, prompt=prompt)


def record_run(*, canary_id: int, worker_id: int, answer: str, seconds: float) -> CanaryRun:
    """Compare and record; an answer that is not the known one counts against the worker."""
    canary = Canary.objects.get(pk=canary_id)
    score = agreement(canary.answer, answer)
    passed = score >= settings.TRUST_CANARY_MIN_AGREEMENT
    run = CanaryRun.objects.create(canary=canary, worker_id=worker_id, passed=passed, agreement=round(score, 3), answer=answer[:2000], seconds=seconds)
    if not passed and Worker.objects.filter(pk=worker_id).exists():
        services.strike(
            worker_id, kind=TrustEvent.Kind.CANARY, job_id="",
            detail=f"a canary's answer matched {score:.0%} of the known one (needs {settings.TRUST_CANARY_MIN_AGREEMENT:.0%})",
        )
    return run


def record_no_answer(*, canary_id: int, worker_id: int, seconds: float, error: str) -> None:
    """The worker failed the canary (an error frame, a timeout, a lost socket): its time
    counts against the budget, but nothing is judged (the stats punish failures already)."""
    CanaryRun.objects.create(canary_id=canary_id, worker_id=worker_id, passed=None, agreement=0, answer=error[:2000], seconds=seconds)
