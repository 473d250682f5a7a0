"""Each process's canary loop: every TRUST_CANARY_INTERVAL, send canaries to free workers due one.

What a canary is and how it is judged: trust/canaries.py. A canary only takes a
free connection (it never waits in the line, so no caller waits behind it) and
is claimed like any job. The loop is a task of the process runtime
(trust/apps.py): it starts when the process serves and stops early in a
drain, when canaries are on at all.
"""

import logging
import time
from typing import Any

from django.conf import settings

from runtime.backends import backends
from runtime.db import on_db_threads
from runtime.loops import Periodic
from workers.dispatch import AllBusy, FrameTimeout, LayerDown, Timeouts, WorkerGone, claim_job
from workers.liveness import registry
from workers.models import TrustState
from workers.protocol import CHAT_URL
from workers.services import Need, NoWorkerFits

from . import canaries

log = logging.getLogger(__name__)

# At most this many canaries per tick of one process.
PER_TICK = 4

_targets = on_db_threads(canaries.due_targets)
_known = on_db_threads(canaries.known_canary)
_unlearned = on_db_threads(canaries.unlearned_prompt)
_learn = on_db_threads(canaries.learn)
_record = on_db_threads(canaries.record_run)
_no_answer = on_db_threads(canaries.record_no_answer)


class NoAnswer(Exception):
    pass


class CanaryLoop:
    def __init__(self) -> None:
        self._loop = Periodic("trust-canaries", run=self.tick, wait=self._interval, first_wait=True)

    async def start(self) -> None:
        """Start the loop (not at all when canaries are off)."""
        if settings.TRUST_CANARY_SHARE > 0 and settings.TRUST_CANARY_INTERVAL > 0:
            await self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    @staticmethod
    async def _interval() -> float:
        return settings.TRUST_CANARY_INTERVAL

    async def tick(self) -> None:
        process_id = None
        if backends().own_sockets_only:
            # Only a worker connected here can be sent a canary.
            process_id = registry.process_id
            if process_id is None:
                return
        for target in await _targets(process_id=process_id, limit=PER_TICK):
            await send_canary(target)


async def send_canary(target: canaries.Target) -> None:
    canary = await _known(model=target.model) or await learn_one(model=target.model)
    if canary is None:
        return
    need = Need(size=0, model=target.model, pubkey=target.identity, trust_states=(target.state,))
    started = time.monotonic()
    try:
        answer, _ = await ask(need, canaries.request_for(model=target.model, prompt=canary.prompt))
    except (NoWorkerFits, AllBusy):
        return  # taken by a caller meanwhile, or gone: next time
    except NoAnswer as exc:
        await _no_answer(canary_id=canary.pk, worker_id=target.worker_id, seconds=time.monotonic() - started, error=str(exc))
        return
    run = await _record(canary_id=canary.pk, worker_id=target.worker_id, answer=answer, seconds=time.monotonic() - started)
    log.info("canary %s for worker %s: agreement %.2f%s", canary.pk, target.worker_id, run.agreement, "" if run.passed else " (failed)")


async def learn_one(*, model: str) -> Any:
    """Ask an operator-trusted worker serving `model` for a prompt's answer, and keep it."""
    prompt = await _unlearned(model=model)
    if prompt is None:
        return None
    need = Need(size=0, model=model, trust_states=(TrustState.TRUSTED,))
    try:
        answer, worker_id = await ask(need, canaries.request_for(model=model, prompt=prompt))
    except (NoWorkerFits, AllBusy, NoAnswer):
        return None
    return await _learn(model=model, prompt=prompt, answer=answer, worker_id=worker_id)


async def ask(need: Need, request: dict[str, Any]) -> tuple[str, int]:
    """One non-streamed chat job on a free connection that fits `need`: (the answer's text, worker id)."""
    timeouts = Timeouts(first=settings.FIRST_TOKEN_TIMEOUT, gap=settings.GAP_TIMEOUT, total=settings.TOTAL_TIMEOUT)
    handle = await claim_job(need=need, queue_timeout=0)
    try:
        await handle.send(openai_url=CHAT_URL, openai_req=request, ends_with_marker=False, max_seconds=timeouts.total)
        reply = await anext(handle.frames(timeouts))
    except (LayerDown, WorkerGone, FrameTimeout) as exc:
        raise NoAnswer(f"no answer: {exc}") from None
    finally:
        await handle.abandon()
    try:
        text = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise NoAnswer(f"not a chat completion: {str(reply)[:200]}") from None
    if not isinstance(text, str):
        raise NoAnswer("the answer's content is not text")
    return text, handle.claim.worker_id


loop = CanaryLoop()
