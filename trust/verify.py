"""Running one verification: claim a verifier, send it the checked text, judge its scores.

Runs in a background task after the caller has its answer, so it never delays
one. The verifier is claimed like any job (the same pool, the same waiting
line), but only among identities whose verdicts count (trust/services.py).
The job on the wire is Queenbee's additive `/queenbee/verify` (workerbee/verify.py
documents it); only workers that announced the `verify` feature get it.
"""

import asyncio
import logging
import time
from typing import Any

from django.conf import settings

from billing import services as billing
from runtime.db import on_db_threads
from workers.dispatch import AllBusy, FrameTimeout, LayerDown, Timeouts, WorkerGone, claim_job
from workers.live import live_pool
from workers.pool import PoolDown
from workers.protocol import VERIFY_URL, verify_request
from workers.services import Need, NoWorkerFits

from . import services, usage, verdict

log = logging.getLogger(__name__)

# Scores are one frame; a verifier that loads the model first may take a while.
VERIFY_TIMEOUTS = Timeouts(first=120.0, gap=120.0, total=180.0)

_tasks: set[asyncio.Task] = set()
_need = on_db_threads(services.verifier_need)
_start = on_db_threads(services.start_verification)
_unavailable = on_db_threads(services.finish_unavailable)
_apply = on_db_threads(services.apply_verdict)
_record_unavailable = on_db_threads(services.record_unavailable)
_formats_alike = on_db_threads(services.formats_like_the_reference_worker)


def schedule(*, check: services.Check, worker_id: int) -> None:
    """Start verifying in the background (never awaited by a request)."""
    task = asyncio.get_running_loop().create_task(run(check=check, worker_id=worker_id))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


NO_VERIFIER = "no verifier in good standing serves this model"


async def run(*, check: services.Check, worker_id: int) -> None:
    try:
        if not await _anyone_could_verify(check=check, worker_id=worker_id):
            # Most jobs of a new worker, where nobody announces `verify`: one
            # database call instead of four, and no claim that must fail.
            await _record_unavailable(check=check, worker_id=worker_id, reason=NO_VERIFIER)
            _wake_remote_billing()
            return
        await _start(check=check, worker_id=worker_id)
        outcome = await _score(check=check, worker_id=worker_id)
        if isinstance(outcome, str):
            await _unavailable(job_id=check.job_id, reason=outcome)
            _wake_remote_billing()
            return
        verifier_id, scores, seconds = outcome
        # Without a chat template, each worker implementation writes its own prompt:
        # the verifier's may differ from an original worker's (llama-cpp-python's).
        same_prompt = scores["chat_template"] or await _formats_alike(worker_id=worker_id)
        judged = verdict.decide(
            request=check.request, tokens=scores["tokens"], end=scores.get("end"), finish_reason=check.finish_reason, same_prompt=same_prompt,
        )
        scored = usage.scored(
            request=check.request, completion=check.completion, prompt_tokens=scores["prompt_tokens"],
            completion_tokens=scores["completion_tokens"],
        )
        doubt = usage.verifier_counts_doubt(
            request=check.request, completion=check.completion, prompt_tokens=scores["prompt_tokens"],
            completion_tokens=scores["completion_tokens"], scored_tokens=len(scores["tokens"]), truncated=scores["truncated"],
        )
        if doubt:
            log.warning("verifier %s's token counts for job %s are not billed: %s", verifier_id, check.job_id, doubt)
        await _apply(
            job_id=check.job_id, verifier_id=verifier_id, verdict=judged, prompt_tokens=scores["prompt_tokens"],
            completion_tokens=scores["completion_tokens"], seconds=seconds, scored=scored, bill_counts=not doubt,
        )
        _wake_remote_billing()
    except Exception:
        log.exception("verification of job %s failed", check.job_id)


def _wake_remote_billing() -> None:
    """A verdict may have released a held `complete`, or queued a verifier's payout, for the remote billing backend."""
    billing.deliver_queued()


async def _anyone_could_verify(*, check: services.Check, worker_id: int) -> bool:
    """Whether any live connection but the checked worker's could verify `check`,
    by the pool alone: a verifier_need without the owner and address (which
    only narrow it), so False means every tier would find nobody. True when the
    pool cannot be reached: the tiers' claims then fail as they always did."""
    need = Need(
        size=check.need.size, model=check.need.model, capabilities=("llama-infer", "verify"), worker_kind="cli",
        exclude_workers=frozenset({worker_id}), trust_states=tuple(dict.fromkeys(s for tier in services.verifier_tiers() for s in tier)),
    )
    try:
        return await live_pool().fits_any(need=need)
    except PoolDown:
        return True


async def _score(*, check: services.Check, worker_id: int) -> tuple[int, dict[str, Any], float] | str:
    """Ask a verifier for its scores: (verifier id, scores, seconds), or why nobody could."""
    tiers = services.verifier_tiers()
    reason = NO_VERIFIER
    for n, states in enumerate(tiers):
        need = await _need(check=check, worker_id=worker_id, states=states)
        if need is None:
            return "the checked worker is gone"
        last = n == len(tiers) - 1
        try:
            handle = await claim_job(need=need, queue_timeout=settings.TRUST_VERIFY_QUEUE_TIMEOUT if last else 0)
        except (NoWorkerFits, AllBusy) as exc:
            reason = str(exc)
            continue
        try:
            started = time.monotonic()
            await handle.send(
                openai_url=VERIFY_URL,
                openai_req=verify_request(
                    model=check.request.get("model"), request_url=check.openai_url, request=check.request,
                    completion=check.completion,
                ),
                ends_with_marker=False, max_seconds=VERIFY_TIMEOUTS.total,
            )
            reply = await anext(handle.frames(VERIFY_TIMEOUTS))
        except (LayerDown, WorkerGone, FrameTimeout) as exc:
            return f"the verifier failed: {exc}"
        finally:
            await handle.abandon()
        scores = parse_scores(reply)
        if scores is None:
            return f"the verifier sent no usable scores: {str(reply)[:200]}"
        return handle.claim.worker_id, scores, time.monotonic() - started
    return reason


def parse_scores(reply: Any) -> dict[str, Any] | None:
    """The verifier's frame, checked: a verifier is a worker too, and may be hostile or broken."""
    scores = reply.get("verification") if isinstance(reply, dict) else None
    if not isinstance(scores, dict):
        return None
    tokens, end = scores.get("tokens"), scores.get("end")
    counts = (scores.get("prompt_tokens"), scores.get("completion_tokens"))
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
        return None
    if not isinstance(tokens, list) or not all(_is_score(t) for t in tokens):
        return None
    if end is not None and not _is_score(end):
        return None
    templated, truncated = scores.get("chat_template", True), scores.get("truncated", False)
    return {
        "tokens": tokens, "end": end, "prompt_tokens": counts[0], "completion_tokens": counts[1],
        "chat_template": templated is not False, "truncated": truncated is True,
    }


def _is_score(t: Any) -> bool:
    return isinstance(t, list) and len(t) == 4 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in t)
