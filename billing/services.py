"""Admitting requests, billing succeeded work, verification's consequences, and moving credits.

Who bills (the local ledger or the remote BILLING_URL backend) was chosen at
start (billing/backends.py); these functions ask it, never the setting.

A job's record may be written twice (a retried write, two processes). The
Job's unique `public_id` and the ledger's unique (job, kind) refuse the second
write in the same transaction (routing/records.py), so nobody is billed twice. A
fine-tune is billed in the transaction whose compare-and-set marks it succeeded
(finetune/billing.py), which wins once; the ledger's unique (fine_tune, kind)
and the outbox's one row per fine-tune would refuse a second billing anyway.

Billing sits below routing and finetune: it gets their jobs as arguments (any
object with the fields named), points at them by id, and reaches routing's Job
table only through its own rows' foreign keys (`models.inference_jobs`).
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from api.auth import BYPASS_CALLER, Caller
from api.models import ApiKey
from runtime.caching import Expiring
from runtime.db import on_db_threads

from . import backends, limits, prices
from .backends import Billable
from .ledger import credit as credit  # the ledger's primitives are billing's services too
from .ledger import debit as debit
from .ledger import paying_account
from .models import Account, LedgerEntry, OutboxMessage, Price, inference_jobs

# Admission reads a key's account at most this often per process, so the hot path
# mostly skips a thread hop and a query. A balance this stale can only admit a
# request that the debit then caps at what is left (never below zero).
KEY_FACTS_SECONDS = 2.0
_recent_facts = Expiring()


@dataclass(frozen=True)
class KeyFacts:
    """What admission needs to know about an API key's account, in one query."""

    account_id: int | None
    balance: int
    requests_per_minute: int
    concurrent_streams: int


# --- Admission (before a worker is claimed) ----------------------------------------------


def key_facts(*, api_key_id: int) -> KeyFacts:
    row = (
        ApiKey.objects.filter(pk=api_key_id)
        .values_list("account_id", "account__balance", "account__requests_per_minute", "account__concurrent_streams")
        .first()
    )
    account_id, balance, rpm, streams = row or (None, 0, None, None)
    return KeyFacts(
        account_id=account_id,
        balance=balance or 0,
        requests_per_minute=settings.RATE_LIMIT_REQUESTS_PER_MINUTE if rpm is None else rpm,
        concurrent_streams=settings.RATE_LIMIT_CONCURRENT_STREAMS if streams is None else streams,
    )


def _limit_key(caller: Caller) -> str:
    return f"k{caller.api_key_id}" if caller.api_key_id is not None else caller.label


async def _facts(caller: Caller) -> KeyFacts:
    if caller.api_key_id is None:
        return KeyFacts(None, 0, settings.RATE_LIMIT_REQUESTS_PER_MINUTE, settings.RATE_LIMIT_CONCURRENT_STREAMS)
    hit, facts = _recent_facts.get(caller.api_key_id)
    if not hit:
        facts = await _key_facts(api_key_id=caller.api_key_id)
        _recent_facts.put(caller.api_key_id, facts, seconds=KEY_FACTS_SECONDS)
    return facts


async def admit(caller: Caller) -> None:
    """Refuse a request over its key's rate or without funds (429), before any worker is claimed.

    The bypass token skips billing and limits entirely.
    """
    if caller == BYPASS_CALLER:
        return
    facts = await _facts(caller)
    await limits.count_request(key=_limit_key(caller), per_minute=facts.requests_per_minute)
    await backends.active().admit(caller, facts)


async def take_stream_slot(caller: Caller) -> str | None:
    """Hold one of the caller's concurrent streams (429 over its limit); release with `release_stream_slot`."""
    if caller == BYPASS_CALLER:
        return None
    facts = await _facts(caller)
    return await limits.take_stream_slot(key=_limit_key(caller), limit=facts.concurrent_streams)


release_stream_slot = limits.release_stream_slot


# --- Billing succeeded work -----------------------------------------------------------------


def bill(work: Billable) -> bool:
    """Bill succeeded work with the chosen backend (call in the transaction that records it).
    Returns True when a `complete` for the remote backend is due (`deliver_queued`)."""
    return backends.active().bill(work)


def deliver_queued() -> None:
    """After a transaction that billed work: send what it queued for a remote backend now."""
    backends.active().deliver_queued()


@dataclass(frozen=True)
class JobBill:
    """A succeeded inference job as billing sees it. `job` is a routing.Job row (or
    anything with its fields): billing reads it and never imports it."""

    job: Any
    bill_to: str = ""

    @property
    def link(self) -> dict[str, int]:
        return {"job_id": self.job.pk}

    @property
    def api_key_id(self) -> int | None:
        return self.job.api_key_id

    @property
    def charge_caller(self) -> bool:
        return self.job.charge_caller

    @property
    def pay_worker(self) -> bool:
        return self.job.pay_worker

    @property
    def hold(self) -> bool:
        return bool(self.job.verification)  # charged now, the earning held until the verdict

    @property
    def owner_key_hash(self) -> str:
        return self.job.worker.owner_key_hash if self.job.worker_id else ""

    def cost(self) -> int:
        return job_cost(self.job)

    def complete_command(self) -> dict[str, Any]:
        return complete_command(job=self.job, bill_to=self.bill_to)


def bill_job(*, job: Any, bill_to: str = "") -> bool:
    """Charge the caller and pay the worker's owner for a succeeded job (call in its transaction).

    Failed and cancelled jobs are never given here (routing/records.py); the bypass
    token's cost nothing, and a proof-of-work job neither charges nor pays. Returns
    True when a `complete` for the remote backend was queued and is due.
    """
    if job.caller == BYPASS_CALLER.label:
        return False
    return bill(JobBill(job=job, bill_to=bill_to))


def rates_for(*, kind: str, model_size: float) -> prices.Rates:
    """The prices of a job of `kind` on a model of `model_size`: its Price row, else the settings."""
    row = Price.objects.filter(kind=kind, min_size__lte=model_size).order_by("-min_size").first()
    return prices.Rates(
        per_request=row.per_request, per_1k_prompt_tokens=row.per_1k_prompt_tokens,
        per_1k_completion_tokens=row.per_1k_completion_tokens, per_image=row.per_image,
    ) if row else prices.Rates(
        per_request=settings.BILLING_PRICE_PER_REQUEST,
        per_1k_prompt_tokens=settings.BILLING_PRICE_PER_1K_PROMPT_TOKENS,
        per_1k_completion_tokens=settings.BILLING_PRICE_PER_1K_COMPLETION_TOKENS,
        per_image=settings.BILLING_PRICE_PER_IMAGE,
    )


def job_cost(job: Any) -> int:
    """Credits for a job of `job.kind` on a model of `job.model_size`, by its usage."""
    rates = rates_for(kind=job.kind, model_size=job.model_size)
    return prices.cost(rates, prompt_tokens=job.prompt_tokens, completion_tokens=job.completion_tokens, images=job.images)


def fine_tune_cost(*, model_size: float) -> int:
    """Credits for one succeeded fine-tune of a base model this size: the `fine_tune`
    Price row's `per_request`, else BILLING_PRICE_PER_FINE_TUNE."""
    price = (
        Price.objects.filter(kind=Price.Kind.FINE_TUNE, min_size__lte=model_size)
        .order_by("-min_size")
        .values_list("per_request", flat=True)
        .first()
    )
    return settings.BILLING_PRICE_PER_FINE_TUNE if price is None else price


def complete_command(*, job: Any, bill_to: str) -> dict[str, Any]:
    """The original's `complete`, with what it lacked: usage, model, size, duration."""
    return {
        "command": "complete",
        "bill_to_token": bill_to,
        "pay_to_lnurl": job.worker.payout_address if job.worker_id else "",
        "job_id": job.public_id,
        "kind": job.kind,
        "model": job.model,
        "model_size": job.model_size,
        "usage": {
            "prompt_tokens": job.prompt_tokens,
            "completion_tokens": job.completion_tokens,
            "total_tokens": job.prompt_tokens + job.completion_tokens,
            "images": job.images,
            "estimated": job.usage_estimated,
        },
        "duration": round(job.total_seconds, 3),
        "pay_worker": job.pay_worker,
    }


# --- Verification's consequences (trust/services.py calls these in its transaction) -----------


def set_verification(*, job_id: str, status: str) -> None:
    inference_jobs().filter(public_id=job_id).update(verification=status)


def _net_charge(job_id: str) -> int:
    """What the caller paid for the job, after refunds."""
    rows = LedgerEntry.objects.filter(job__public_id=job_id, kind__in=(LedgerEntry.Kind.CHARGE, LedgerEntry.Kind.REFUND))
    return -sum(rows.values_list("amount", flat=True))


def settle_job(*, job_id: str) -> bool:
    """Pay a held earning (its share of what the caller finally paid). True if paid."""
    hold = LedgerEntry.objects.filter(job__public_id=job_id, kind=LedgerEntry.Kind.HOLD).first()
    if hold is None or LedgerEntry.objects.filter(job_id=hold.job_id, kind__in=(LedgerEntry.Kind.EARNING, LedgerEntry.Kind.FORFEIT)).exists():
        return False
    earned = prices.worker_share(_net_charge(job_id), settings.BILLING_WORKER_SHARE)
    if earned <= 0:
        return False
    credit(account_id=hold.account_id, amount=earned, kind=LedgerEntry.Kind.EARNING, job_id=hold.job_id, note="held until verified")
    return True


# routing.Job.Verification.FAILED, as trust writes it (set_verification).
REFUTED = "failed"


def release_holds(*, worker_id: int) -> int:
    """Pay every held earning of a worker that is now in good standing, except refuted jobs'."""
    job_ids = (
        LedgerEntry.objects.filter(kind=LedgerEntry.Kind.HOLD, job__worker_id=worker_id)
        .exclude(job__verification=REFUTED)
        .values_list("job__public_id", flat=True)
    )
    return sum(settle_job(job_id=job_id) for job_id in list(job_ids))


def refund_job(*, job_id: str, reason: str) -> None:
    """Refuted work: the caller gets back what it paid, the held earning is forfeited."""
    _drop_held_complete(job_id=job_id, reason=reason)
    charge = LedgerEntry.objects.filter(job__public_id=job_id, kind=LedgerEntry.Kind.CHARGE).first()
    paid = _net_charge(job_id)
    if charge is not None and paid > 0:
        credit(account_id=charge.account_id, amount=paid, kind=LedgerEntry.Kind.REFUND, job_id=charge.job_id, note=reason)
    hold = LedgerEntry.objects.filter(job__public_id=job_id, kind=LedgerEntry.Kind.HOLD).first()
    if hold is not None:
        balance = Account.objects.filter(pk=hold.account_id).values_list("balance", flat=True).get()
        LedgerEntry.objects.create(
            account_id=hold.account_id, job_id=hold.job_id, kind=LedgerEntry.Kind.FORFEIT, amount=0, balance_after=balance, note=reason[:200]
        )


def send_held_complete(*, job_id: str) -> bool:
    """A remote backend's `complete` for a job that was not refuted: send it, with the
    usage as billed now (the verifier's count). True if one was waiting."""
    if not backends.active().holds_completes:
        return False  # the local ledger: nothing was held (and no query to find that out)
    message = OutboxMessage.objects.filter(job__public_id=job_id, state=OutboxMessage.State.HELD).select_related("job__worker").first()
    if message is None:
        return False
    payload = complete_command(job=message.job, bill_to=message.payload.get("bill_to_token", ""))
    OutboxMessage.objects.filter(pk=message.pk, state=OutboxMessage.State.HELD).update(
        state=OutboxMessage.State.PENDING, payload=payload, next_attempt_at=timezone.now()
    )
    return True


def _drop_held_complete(*, job_id: str, reason: str) -> None:
    """Refuted work is never billed remotely: its `complete` is not sent, and says why."""
    message = OutboxMessage.objects.filter(job__public_id=job_id, state=OutboxMessage.State.HELD).first()
    if message is not None:
        OutboxMessage.objects.filter(pk=message.pk).update(
            state=OutboxMessage.State.GAVE_UP, payload={**message.payload, "bill_to_token": ""}, last_error=f"not billed: {reason}"[:500]
        )


def reprice_job(*, job_id: str, prompt_tokens: int, completion_tokens: int) -> None:
    """Bill the verifier's token counts: when they cost less than what was charged, refund the difference."""
    job = inference_jobs().filter(public_id=job_id).first()
    if job is None or (job.prompt_tokens, job.completion_tokens) == (prompt_tokens, completion_tokens):
        return
    inference_jobs().filter(pk=job.pk).update(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    job.prompt_tokens, job.completion_tokens = prompt_tokens, completion_tokens
    paid, account_id = _net_charge(job_id), paying_account(api_key_id=job.api_key_id)
    if account_id is not None and job.charge_caller and paid > job_cost(job):
        credit(account_id=account_id, amount=paid - job_cost(job), kind=LedgerEntry.Kind.REFUND, job_id=job.pk, note="usage as the verifier counted it")


# --- Paying verifiers (trust/services.py calls this in the verdict's transaction) --------------


def pay_verifier(
    *, job_id: str, owner_key_hash: str, payout_address: str, prompt_tokens: int, completion_tokens: int,
    refuted: bool, seconds: float, per_1k: float | None,
) -> bool:
    """Pay a counted verification of job `job_id` to its verifier's owner, with the chosen
    backend. Call it before a refutation's refund: the pay is capped by what the operator
    kept of what the caller paid. Returns True when a remote payout is due (`deliver_queued`)."""
    job = inference_jobs().filter(public_id=job_id).first()
    if job is None:
        return False
    payout = VerifierPayout(
        job=job, owner_key_hash=owner_key_hash, payout_address=payout_address, prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens, refuted=refuted, seconds=seconds,
        credits=verifier_earning(job=job, scored_tokens=prompt_tokens + completion_tokens, per_1k=per_1k),
    )
    return backends.active().pay_verifier(payout)


def verifier_earning(*, job: Any, scored_tokens: int, per_1k: float | None) -> int:
    """Credits a verifier's owner earns for scoring `scored_tokens` of `job`: `per_1k` per
    thousand (None: the job's prompt price times BILLING_WORKER_SHARE, what a worker
    earns for reading a prompt that long), rounded up, but never more than the operator
    kept of what the caller paid for the job. So checking work costs the operator at most
    its margin on it and never a caller anything; a job nobody paid for (a proof of work,
    an unmetered key) pays its verifier nothing, so that identities and free first jobs,
    which cost nothing to make, cannot be turned into credits."""
    if per_1k is None:
        per_1k = rates_for(kind=job.kind, model_size=job.model_size).per_1k_prompt_tokens * settings.BILLING_WORKER_SHARE
    paid = _net_charge(job.public_id)
    kept = paid - prices.worker_share(paid, settings.BILLING_WORKER_SHARE)
    return max(0, min(prices.per_1k(scored_tokens, per_1k), kept))


@dataclass(frozen=True)
class VerifierPayout:
    """A counted verification as billing pays it. `job` is the checked routing.Job row."""

    job: Any
    owner_key_hash: str  # the verifier owner's auth-key hash ("": nobody to pay locally)
    payout_address: str  # the verifier's lnurl, which a remote backend pays
    prompt_tokens: int
    completion_tokens: int
    refuted: bool
    seconds: float
    credits: int  # by the local rule (verifier_earning)

    @property
    def scored_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def note(self) -> str:
        verdict = "refuted" if self.refuted else "passed"
        return f"verified job {self.job.public_id} ({verdict}): {self.scored_tokens} tokens scored, paid by the operator"

    def complete_command(self) -> dict[str, Any]:
        """A `complete` that bills nobody and pays the verifier (BILLING_REMOTE_VERIFY_PAYOUTS)."""
        return {
            "command": "complete",
            "bill_to_token": "",
            "pay_to_lnurl": self.payout_address,
            "job_id": self.job.public_id,
            "kind": "verify",
            "verdict": "refuted" if self.refuted else "passed",
            "model": self.job.model,
            "model_size": self.job.model_size,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.scored_tokens,
                "images": 0,
                "estimated": False,
            },
            "duration": round(self.seconds, 3),
            "pay_worker": True,
        }


# --- Accounts and the outbox (admin, manage.py) ------------------------------------------------


def top_up(*, account_id: int, amount: int, note: str = "") -> LedgerEntry:
    return credit(account_id=account_id, amount=amount, kind=LedgerEntry.Kind.TOP_UP, note=note)


def create_account(*, name: str, credits: int = 0, **limits_: Any) -> Account:
    with transaction.atomic():
        account = Account.objects.create(name=name, **limits_)
        if credits:
            top_up(account_id=account.pk, amount=credits, note="opening balance")
    account.refresh_from_db()
    return account


def retry_outbox_now(*, ids: list[int]) -> int:
    return OutboxMessage.objects.filter(pk__in=ids).exclude(state=OutboxMessage.State.DELIVERED).update(
        state=OutboxMessage.State.PENDING, next_attempt_at=timezone.now() - timedelta(seconds=1), claimed_until=None
    )


# The request path's database calls, on the shared database threads (runtime/db.py):
# no new thread and database connection per request.
_key_facts = on_db_threads(key_facts)
