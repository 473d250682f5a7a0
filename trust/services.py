"""Trust: which jobs are verified, what a verdict does to an identity, its money and its stats.

The honest path stays cheap: the decision to verify is made where the job is
recorded (off the request's critical path, in the batch writer), and the
verification itself runs in a background task after the caller has its
answer (trust/verify.py).

States (workers.models.TrustState) and how they move:
- new: every job verified, earnings held. TRUST_PASSES_TO_VERIFY passes in a
  row → verified, and its held earnings are paid.
- verified: a TRUST_VERIFY_SHARE of jobs is verified (held until the verdict).
- suspect (a refuted job or out-of-bounds usage while new or verified): every
  job verified again, earnings held; TRUST_PASSES_TO_VERIFY passes → verified.
- quarantined (a refutation or violation while suspect): no jobs at all, until
  an operator releases (→ new) or trusts it.
- trusted: set by the operator; TRUST_TRUSTED_VERIFY_SHARE of its jobs checked.
A refuted job is refunded to its caller and its held earning forfeited; the
worker is punished in stats and its speed estimates are dropped, so refuted
work never counts towards the routing.

A counted verdict pays its verifier's owner for the tokens it scored, passed or
refuted alike (billing.services.pay_verifier): the pay never depends on the
verdict, so a verifier gains nothing by passing or by refuting. A verdict counts
only from a verifier whose standing lets it verify (verifier_tiers) when the
verdict arrives; one that lost it meanwhile is not counted, nor paid. Verifiers
are never new identities, so there is no earning of theirs to hold.
"""

import logging
import random
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import services as billing
from stats import services as stats
from workers.models import GOOD_STANDING, Connection, TrustState, Worker
from workers.services import Need

from . import replays
from .models import TrustEvent, Verification
from .verdict import Verdict

log = logging.getLogger(__name__)
_rng = random.Random()


@dataclass(frozen=True)
class Check:
    """A finished text job as a verifier needs it: the request the worker got and the text it returned."""

    job_id: str
    openai_url: str
    request: dict[str, Any]
    completion: str
    finish_reason: str
    need: Need
    seconds: float  # the job's own time, to compare the verifier's with


def verify_share(state: str) -> float:
    if state in (TrustState.NEW, TrustState.SUSPECT):
        return 1.0
    if state == TrustState.TRUSTED:
        return settings.TRUST_TRUSTED_VERIFY_SHARE
    if state == TrustState.VERIFIED:
        return settings.TRUST_VERIFY_SHARE
    return 0.0


def plan_job(*, worker_id: int, fields: dict[str, Any], check: Check | None, state: str = "") -> bool:
    """Decide, as the job is recorded, whether it is verified (its earning then held
    until the verdict), by the worker's trust `state` when its claim read it (else it
    is read here). Records a usage violation against the worker, and refutes a
    replay (trust/replays.py) on the spot: `fields["verification"]` says failed, and
    the job is then neither charged nor paid. Returns whether to start a verification."""
    state = state or Worker.objects.filter(pk=worker_id).values_list("trust_state", flat=True).first()
    if state is None:
        return False
    if fields.get("usage_corrected"):
        strike(worker_id, kind=TrustEvent.Kind.USAGE, job_id=fields["public_id"], detail="reported usage outside what it sent and was asked")
    checkable = check is not None and fields.get("status") == "succeeded"
    if checkable and (first := replays.replayed_job(job_id=check.job_id, request=check.request, completion=check.completion)):
        fields["verification"] = Verification.Status.FAILED
        strike(worker_id, kind=TrustEvent.Kind.REFUTED, job_id=fields["public_id"], detail=f"replayed the answer of job {first} to another prompt")
        stats.forget_speed(worker_id=worker_id, reason=stats.Failure.REFUTED)
        return False
    verify = checkable and _rng.random() < verify_share(state)
    if verify:
        fields["verification"] = Verification.Status.PENDING
    return verify


def in_good_standing(worker_id: int) -> bool:
    return Worker.objects.filter(pk=worker_id, trust_state__in=GOOD_STANDING).exists()


def _move(worker: Worker, to: str, *, kind: str, job_id: str = "", detail: str = "") -> None:
    """Record an event and move the identity to `to` (call with the row locked)."""
    TrustEvent.objects.create(worker=worker, kind=kind, from_state=worker.trust_state, to_state=to, job_id=job_id, detail=detail[:300])
    if to != worker.trust_state:
        reason = detail if to != TrustState.VERIFIED else ""
        Worker.objects.filter(pk=worker.pk).update(trust_state=to, trust_reason=reason[:300])
        if to in GOOD_STANDING:
            billing.release_holds(worker_id=worker.pk)
        log.info("worker %s is now %s: %s", worker.short_name, to, detail)


def strike(worker_id: int, *, kind: str, job_id: str, detail: str) -> None:
    """A refutation or usage violation: new/verified → suspect, suspect → quarantined."""
    with transaction.atomic():
        worker = Worker.objects.select_for_update().get(pk=worker_id)
        to = {
            TrustState.NEW: TrustState.SUSPECT,
            TrustState.VERIFIED: TrustState.SUSPECT,
            TrustState.SUSPECT: TrustState.QUARANTINED,
        }.get(worker.trust_state, worker.trust_state)
        _move(worker, to, kind=kind, job_id=job_id, detail=detail)


def start_verification(*, check: Check, worker_id: int) -> None:
    Verification.objects.get_or_create(job_id=check.job_id, defaults={"worker_id": worker_id})


def finish_unavailable(*, job_id: str, reason: str) -> None:
    """No verifier could check it: a worker in good standing is paid; a new or
    suspect one's earning stays held until the identity is verified."""
    with transaction.atomic():
        _unavailable(Verification.objects.select_for_update().get(job_id=job_id), reason=reason)


def _unavailable(verification: Verification, *, reason: str) -> None:
    verification.status, verification.reason, verification.finished_at = Verification.Status.UNAVAILABLE, reason[:300], timezone.now()
    verification.save()
    _settle_unavailable(job_id=verification.job_id, worker_id=verification.worker_id)


def _settle_unavailable(*, job_id: str, worker_id: int) -> None:
    billing.set_verification(job_id=job_id, status=Verification.Status.UNAVAILABLE)
    billing.send_held_complete(job_id=job_id)
    if in_good_standing(worker_id):
        billing.settle_job(job_id=job_id)


def apply_verdict(
    *, job_id: str, verifier_id: int, verdict: Verdict, prompt_tokens: int, completion_tokens: int, seconds: float,
    scored: tuple[int, int], bill_counts: bool = True,
) -> None:
    """Record the verdict; move the identity; pay, refund or reprice the job (with the verifier's
    counts, when `bill_counts`: trust/usage.py's verifier_counts_doubt found nothing wrong with
    them); pay the verifier for the (prompt, completion) tokens it `scored` (its counts within
    the usage bounds)."""
    with transaction.atomic():
        verification = Verification.objects.select_for_update().get(job_id=job_id)
        if verification.status != Verification.Status.PENDING:
            return  # decided already (a verdict is applied once)
        verifier = Worker.objects.filter(pk=verifier_id).values("trust_state", "owner_key_hash", "payout_address").first()
        if verifier is None or verifier["trust_state"] not in verifying_states():
            # It lost its standing while it scored (a refutation of its own work, the operator).
            verification.verifier_id = verifier_id if verifier is not None else None  # kept for the admin
            _unavailable(verification, reason="the verifier's verdict does not count: it is no longer in good standing")
            return
        verification.verifier_id = verifier_id
        verification.status = Verification.Status.PASSED if verdict.passed else Verification.Status.FAILED
        verification.reason = verdict.reason[:300]
        verification.tokens, verification.prompt_tokens = completion_tokens, prompt_tokens
        verification.implausible, verification.mean_gap = verdict.implausible, round(verdict.mean_gap, 3)
        verification.seconds, verification.finished_at = seconds, timezone.now()
        verification.save()
        billing.set_verification(job_id=job_id, status=verification.status)
        worker_id = verification.worker_id
        if verdict.passed:
            if bill_counts:  # the verifier tokenized the text with the real model: its count is billed
                billing.reprice_job(job_id=job_id, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
            _pay_verifier(verifier, job_id=job_id, scored=scored, seconds=seconds, refuted=False)
            billing.send_held_complete(job_id=job_id)
            _passed(worker_id, job_id=job_id)
        else:
            # Paid before the refund: on what the caller paid for the work it caught.
            _pay_verifier(verifier, job_id=job_id, scored=scored, seconds=seconds, refuted=True)
            billing.refund_job(job_id=job_id, reason=f"refuted by verification: {verdict.reason}")
            strike(worker_id, kind=TrustEvent.Kind.REFUTED, job_id=job_id, detail=f"a job failed verification: {verdict.reason}")
            stats.forget_speed(worker_id=worker_id, reason=stats.Failure.REFUTED)


def _pay_verifier(verifier: dict[str, Any], *, job_id: str, scored: tuple[int, int], seconds: float, refuted: bool) -> None:
    billing.pay_verifier(
        job_id=job_id, owner_key_hash=verifier["owner_key_hash"], payout_address=verifier["payout_address"],
        prompt_tokens=scored[0], completion_tokens=scored[1], refuted=refuted, seconds=seconds,
        per_1k=settings.TRUST_VERIFY_PRICE_PER_1K_TOKENS,
    )


def _passed(worker_id: int, *, job_id: str) -> None:
    worker = Worker.objects.select_for_update().get(pk=worker_id)
    if worker.trust_state in GOOD_STANDING:
        billing.settle_job(job_id=job_id)
        return
    if worker.trust_state not in (TrustState.NEW, TrustState.SUSPECT):
        return
    last_strike = (
        TrustEvent.objects.filter(worker_id=worker_id, kind__in=(TrustEvent.Kind.REFUTED, TrustEvent.Kind.USAGE, TrustEvent.Kind.CANARY, TrustEvent.Kind.OPERATOR))
        .values_list("created_at", flat=True)
        .first()
    )
    passes = Verification.objects.filter(worker_id=worker_id, status=Verification.Status.PASSED)
    if last_strike is not None:
        passes = passes.filter(finished_at__gt=last_strike)
    if passes.count() >= settings.TRUST_PASSES_TO_VERIFY:
        _move(worker, TrustState.VERIFIED, kind=TrustEvent.Kind.VERIFIED, job_id=job_id, detail=f"passed {passes.count()} verifications")


def set_state(*, worker_id: int, state: str, by: str = "operator") -> None:
    """The operator trusts, quarantines or releases (→ new) an identity."""
    with transaction.atomic():
        worker = Worker.objects.select_for_update().get(pk=worker_id)
        _move(worker, state, kind=TrustEvent.Kind.OPERATOR, detail=f"set to {state} by {by}")


def verifier_tiers() -> tuple[tuple[str, ...], ...]:
    """Whose verdicts count, tried in order: operator-trusted identities first, then
    (unless TRUST_VERIFIERS is "trusted") any other in good standing."""
    if settings.TRUST_VERIFIERS == "trusted":
        return ((TrustState.TRUSTED,),)
    return ((TrustState.TRUSTED,), tuple(GOOD_STANDING))


def verifying_states() -> frozenset[str]:
    """The trust states whose verdicts count."""
    return frozenset(state for tier in verifier_tiers() for state in tier)


def verifier_need(*, check: Check, worker_id: int, states: tuple[str, ...]) -> Need | None:
    """A different identity, owner and address serving the same model, announcing `verify`, in one of `states`."""
    worker = Worker.objects.filter(pk=worker_id).values("owner_key_hash").first()
    if worker is None:
        return None
    address = worker_address(worker_id) if settings.TRUST_VERIFIER_OTHER_ADDRESS else ""
    return Need(
        size=check.need.size,
        model=check.need.model,
        capabilities=("llama-infer", "verify"),
        worker_kind="cli",
        exclude_workers=frozenset({worker_id}),
        exclude_owner=worker["owner_key_hash"],
        exclude_address=address,
        trust_states=states,
    )


def formats_like_the_reference_worker(*, worker_id: int) -> bool:
    """Whether the worker announced Queenbee's features (it is the reference worker or
    speaks its protocol), so that it writes a template-less model's chat prompt as the
    verifier does. An original worker announces none."""
    return Connection.objects.filter(worker_id=worker_id, capabilities_text__contains=",verify,").exists()


def worker_address(worker_id: int) -> str:
    return Connection.objects.filter(worker_id=worker_id).order_by("-connected_at").values_list("address", flat=True).first() or ""


def record_unavailable(*, check: Check, worker_id: int, reason: str) -> None:
    """A job nobody connected could verify, known before any verifier is asked
    (every job of a new identity on a network without verifiers): its Verification
    row is written unavailable at once, in one short transaction. The same outcome
    as start_verification then finish_unavailable, in five statements instead of
    eleven on the local ledger."""
    with transaction.atomic():
        Verification.objects.create(
            job_id=check.job_id, worker_id=worker_id, status=Verification.Status.UNAVAILABLE, reason=reason[:300],
            finished_at=timezone.now(),
        )
        _settle_unavailable(job_id=check.job_id, worker_id=worker_id)
