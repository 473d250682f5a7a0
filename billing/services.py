"""Admitting requests, billing finished jobs and succeeded fine-tunes, and moving credits.

Two races are settled in the database, not in Python:
- Many requests of one account may finish at once. Each debit locks the
  account's row (`select_for_update`; SQLite takes its write lock at BEGIN) and
  takes at most the balance, so a balance never goes below zero (a CHECK
  constraint says so too). What it could not cover is written as `unpaid`.
- A job's record may be written twice (a retried write, two processes). The
  Job's unique `public_id` and the ledger's unique (job, kind) refuse the second
  write in the same transaction, so nobody is billed twice. A fine-tune is billed
  in the transaction whose compare-and-set marks it succeeded, which wins once;
  the ledger's unique (fine_tune, kind) and the outbox's one row per fine-tune
  would refuse a second billing anyway.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from finetune.models import File, FineTuningJob
from runtime.caching import Expiring
from runtime.db import on_db_threads
from api.auth import BYPASS_CALLER, Caller, billing_check
from api.errors import InsufficientQuota, Unauthorized
from routing.models import ApiKey, Job

from . import limits, outbox, prices
from .models import Account, LedgerEntry, OutboxMessage, Price


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
    if settings.BILLING_URL:
        await _check_remote(caller)
    elif facts.account_id is not None and facts.balance < settings.BILLING_MIN_BALANCE:
        raise InsufficientQuota("Your account has no credits left. Top it up to continue.")


async def _check_remote(caller: Caller) -> None:
    outbox.ensure_delivery()  # this process also delivers what others left behind
    # Authentication already asked for a token we do not hold, so this is mostly
    # the answer it cached (no I/O); our own keys are asked here, as always.
    result = await billing_check(caller.bill_to)
    if not result.ok:
        if result.user_id is None:
            raise Unauthorized("Incorrect API key provided.")
        raise InsufficientQuota("Insufficient funds in your account.")


async def take_stream_slot(caller: Caller) -> str | None:
    """Hold one of the caller's concurrent streams (429 over its limit); release with `release_stream_slot`."""
    if caller == BYPASS_CALLER:
        return None
    facts = await _facts(caller)
    return await limits.take_stream_slot(key=_limit_key(caller), limit=facts.concurrent_streams)


release_stream_slot = limits.release_stream_slot


# --- Billing a finished job -----------------------------------------------------------------


def record_and_bill(*, fields: dict[str, Any], bill_to: str = "") -> tuple[Job, bool]:
    """Insert the Job row and bill it, atomically. Returns (job, whether an outbox message was written)."""
    with transaction.atomic():
        job = Job.objects.create(**fields)
        queued = bill_job(job=job, bill_to=bill_to)
    return job, queued


def bill_job(*, job: Job, bill_to: str = "") -> bool:
    """Charge the caller and pay the worker's owner for a succeeded job (call in its transaction).

    Failed and cancelled jobs cost nothing; a proof-of-work job neither charges
    nor pays. Returns True when a `complete` message for the remote backend was
    written to the outbox.
    """
    if job.status != Job.Status.SUCCEEDED or job.caller == "bypass":
        return False
    if settings.BILLING_URL:
        if not job.charge_caller or not bill_to:
            return False
        # A job under verification is billed remotely only once it is not refuted.
        state = OutboxMessage.State.HELD if job.verification else OutboxMessage.State.PENDING
        OutboxMessage.objects.create(job=job, payload=complete_command(job=job, bill_to=bill_to), state=state, next_attempt_at=timezone.now())
        return state == OutboxMessage.State.PENDING
    account_id = _paying_account(job)
    if account_id is None or not job.charge_caller:
        return False
    # A job being verified is charged now and its earning held until the verdict (trust/services.py).
    _charge_and_pay_owner(job, account_id=account_id, amount=job_cost(job), pay_worker=job.pay_worker, hold=bool(job.verification))
    return False


def _paying_account(billed: Job | FineTuningJob) -> int | None:
    """The account behind the API key that asked for it (None: the bypass token, or a key without an account)."""
    if not billed.api_key_id:
        return None
    return ApiKey.objects.filter(pk=billed.api_key_id).values_list("account_id", flat=True).first()


def _charge_and_pay_owner(billed: Job | FineTuningJob, *, account_id: int, amount: int, pay_worker: bool = True, hold: bool = False) -> None:
    """Take up to `amount` from the caller's account and credit the worker's owner
    their share of what was taken (or hold it: a HOLD row, the balance unchanged),
    both ledger rows pointing at `billed`."""
    link = {"fine_tune": billed} if isinstance(billed, FineTuningJob) else {"job": billed}
    charged = debit(account_id=account_id, amount=amount, **link)
    if pay_worker and charged > 0:
        owner = worker_owner_account(job=billed)
        earned = prices.worker_share(charged, settings.BILLING_WORKER_SHARE)
        if owner is not None and earned > 0 and hold:
            balance = Account.objects.filter(pk=owner).values_list("balance", flat=True).get()
            LedgerEntry.objects.create(account_id=owner, kind=LedgerEntry.Kind.HOLD, amount=0, held=earned, balance_after=balance, **link)
        elif owner is not None and earned > 0:
            credit(account_id=owner, amount=earned, kind=LedgerEntry.Kind.EARNING, **link)


# --- Verification's consequences (trust/services.py calls these in its transaction) -----------


def set_verification(*, job_id: str, status: str) -> None:
    Job.objects.filter(public_id=job_id).update(verification=status)


def _net_charge(job_id: str) -> int:
    """What the caller paid for the job, after refunds."""
    rows = LedgerEntry.objects.filter(job__public_id=job_id, kind__in=(LedgerEntry.Kind.CHARGE, LedgerEntry.Kind.REFUND))
    return -sum(rows.values_list("amount", flat=True))


def settle_job(*, job_id: str) -> bool:
    """Pay a held earning (its share of what the caller finally paid). True if paid."""
    hold = LedgerEntry.objects.filter(job__public_id=job_id, kind=LedgerEntry.Kind.HOLD).select_related("job").first()
    if hold is None or LedgerEntry.objects.filter(job_id=hold.job_id, kind__in=(LedgerEntry.Kind.EARNING, LedgerEntry.Kind.FORFEIT)).exists():
        return False
    earned = prices.worker_share(_net_charge(job_id), settings.BILLING_WORKER_SHARE)
    if earned <= 0:
        return False
    credit(account_id=hold.account_id, amount=earned, kind=LedgerEntry.Kind.EARNING, job=hold.job, note="held until verified")
    return True


def release_holds(*, worker_id: int) -> int:
    """Pay every held earning of a worker that is now in good standing, except refuted jobs'."""
    job_ids = (
        LedgerEntry.objects.filter(kind=LedgerEntry.Kind.HOLD, job__worker_id=worker_id)
        .exclude(job__verification=Job.Verification.FAILED)
        .values_list("job__public_id", flat=True)
    )
    return sum(settle_job(job_id=job_id) for job_id in list(job_ids))


def refund_job(*, job_id: str, reason: str) -> None:
    """Refuted work: the caller gets back what it paid, the held earning is forfeited."""
    job = Job.objects.filter(public_id=job_id).first()
    if job is None:
        return
    _drop_held_complete(job=job, reason=reason)
    paid = _net_charge(job_id)
    account_id = _paying_account(job)
    if paid > 0 and account_id is not None:
        credit(account_id=account_id, amount=paid, kind=LedgerEntry.Kind.REFUND, job=job, note=reason)
    hold = LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.HOLD).first()
    if hold is not None:
        balance = Account.objects.filter(pk=hold.account_id).values_list("balance", flat=True).get()
        LedgerEntry.objects.create(account_id=hold.account_id, job=job, kind=LedgerEntry.Kind.FORFEIT, amount=0, balance_after=balance, note=reason[:200])


def send_held_complete(*, job_id: str) -> bool:
    """A remote backend's `complete` for a job that was not refuted: send it, with the
    usage as billed now (the verifier's count). True if one was waiting."""
    message = OutboxMessage.objects.filter(job__public_id=job_id, state=OutboxMessage.State.HELD).select_related("job__worker").first()
    if message is None:
        return False
    payload = complete_command(job=message.job, bill_to=message.payload.get("bill_to_token", ""))
    OutboxMessage.objects.filter(pk=message.pk, state=OutboxMessage.State.HELD).update(
        state=OutboxMessage.State.PENDING, payload=payload, next_attempt_at=timezone.now()
    )
    return True


def _drop_held_complete(*, job: Job, reason: str) -> None:
    """Refuted work is never billed remotely: its `complete` is not sent, and says why."""
    message = OutboxMessage.objects.filter(job=job, state=OutboxMessage.State.HELD).first()
    if message is not None:
        OutboxMessage.objects.filter(pk=message.pk).update(
            state=OutboxMessage.State.GAVE_UP, payload={**message.payload, "bill_to_token": ""}, last_error=f"not billed: {reason}"[:500]
        )


def reprice_job(*, job_id: str, prompt_tokens: int, completion_tokens: int) -> None:
    """Bill the verifier's token counts: when they cost less than what was charged, refund the difference."""
    job = Job.objects.filter(public_id=job_id).first()
    if job is None or (job.prompt_tokens, job.completion_tokens) == (prompt_tokens, completion_tokens):
        return
    Job.objects.filter(pk=job.pk).update(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    job.prompt_tokens, job.completion_tokens = prompt_tokens, completion_tokens
    paid, account_id = _net_charge(job_id), _paying_account(job)
    if account_id is not None and job.charge_caller and paid > job_cost(job):
        credit(account_id=account_id, amount=paid - job_cost(job), kind=LedgerEntry.Kind.REFUND, job=job, note="usage as the verifier counted it")


def job_cost(job: Job) -> int:
    row = Price.objects.filter(kind=job.kind, min_size__lte=job.model_size).order_by("-min_size").first()
    rates = prices.Rates(
        per_request=row.per_request, per_1k_prompt_tokens=row.per_1k_prompt_tokens,
        per_1k_completion_tokens=row.per_1k_completion_tokens, per_image=row.per_image,
    ) if row else prices.Rates(
        per_request=settings.BILLING_PRICE_PER_REQUEST,
        per_1k_prompt_tokens=settings.BILLING_PRICE_PER_1K_PROMPT_TOKENS,
        per_1k_completion_tokens=settings.BILLING_PRICE_PER_1K_COMPLETION_TOKENS,
        per_image=settings.BILLING_PRICE_PER_IMAGE,
    )
    return prices.cost(rates, prompt_tokens=job.prompt_tokens, completion_tokens=job.completion_tokens, images=job.images)


def debit(*, account_id: int, amount: int, job: Job | None = None, fine_tune: FineTuningJob | None = None) -> int:
    """Take up to `amount` from the account for `job` (or `fine_tune`); returns what was taken."""
    with transaction.atomic():
        balance = Account.objects.select_for_update().filter(pk=account_id).values_list("balance", flat=True).get()
        charged = min(amount, balance)
        Account.objects.filter(pk=account_id).update(balance=F("balance") - charged)
        LedgerEntry.objects.create(
            account_id=account_id, job=job, fine_tune=fine_tune, kind=LedgerEntry.Kind.CHARGE, amount=-charged,
            balance_after=balance - charged, unpaid=amount - charged,
        )
    return charged


def credit(
    *, account_id: int, amount: int, kind: str, job: Job | None = None, fine_tune: FineTuningJob | None = None, note: str = ""
) -> LedgerEntry:
    """Add credits to an account, with its ledger row (in the caller's transaction, or its own)."""
    with transaction.atomic():
        balance = Account.objects.select_for_update().filter(pk=account_id).values_list("balance", flat=True).get()
        Account.objects.filter(pk=account_id).update(balance=F("balance") + amount)
        return LedgerEntry.objects.create(
            account_id=account_id, job=job, fine_tune=fine_tune, kind=kind, amount=amount,
            balance_after=balance + amount, note=note[:200],
        )


def top_up(*, account_id: int, amount: int, note: str = "") -> LedgerEntry:
    return credit(account_id=account_id, amount=amount, kind=LedgerEntry.Kind.TOP_UP, note=note)


def worker_owner_account(*, job: Job | FineTuningJob) -> int | None:
    """The account that earns for the job's worker: the one whose API key is the
    worker's auth key, else one of its own, made on first earning."""
    owner_hash = job.worker.owner_key_hash if job.worker_id else ""
    if not owner_hash:
        return None  # a worker without an auth key has nobody to pay
    account_id = ApiKey.objects.filter(key_hash=owner_hash).values_list("account_id", flat=True).first()
    if account_id is not None:
        return account_id
    account, _ = Account.objects.get_or_create(worker_key_hash=owner_hash, defaults={"name": f"worker owner {owner_hash[:8]}"})
    return account.pk


def complete_command(*, job: Job, bill_to: str) -> dict[str, Any]:
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


# --- Billing a fine-tune ---------------------------------------------------------------------


def bill_fine_tune(*, job: FineTuningJob) -> bool:
    """Charge whoever pays for a fine-tune that just succeeded, and pay its worker's
    owner; call in the transaction that marks it succeeded.

    Failed and cancelled fine-tunes are never billed. A second billing of the same
    fine-tune is refused by the ledger's unique (fine-tune, kind) and the outbox's
    one row per fine-tune. Returns True when a `complete` for the remote backend
    was written to the outbox.
    """
    if job.status != FineTuningJob.Status.SUCCEEDED:
        return False
    if settings.BILLING_URL:
        if not job.bill_to:
            return False  # the bypass token, or billed already
        OutboxMessage.objects.create(fine_tune=job, payload=fine_tune_complete_command(job=job), next_attempt_at=timezone.now())
        job.bill_to = ""  # the outbox row holds it until delivered
        job.save(update_fields=["bill_to"])
        return True
    account_id = _paying_account(job)
    if account_id is None:
        return False  # the bypass token, or a key without an account
    _charge_and_pay_owner(job, account_id=account_id, amount=fine_tune_cost(job))
    return False


def fine_tune_cost(job: FineTuningJob) -> int:
    """Credits for one succeeded fine-tune: the `fine_tune` Price row's `per_request`
    for the base model's size, else BILLING_PRICE_PER_FINE_TUNE."""
    price = (
        Price.objects.filter(kind=Price.Kind.FINE_TUNE, min_size__lte=job.model_size)
        .order_by("-min_size")
        .values_list("per_request", flat=True)
        .first()
    )
    return settings.BILLING_PRICE_PER_FINE_TUNE if price is None else price


def fine_tune_complete_command(*, job: FineTuningJob) -> dict[str, Any]:
    """The `complete` of a fine-tune: what was trained, on which base model, for how long.

    The worker reports no token counts; `usage` says how many examples were
    trained for how many epochs (the original sent only `{"job": "fine_tune"}`).
    """
    examples = File.objects.filter(owner=job.owner, public_id=job.training_file).values_list("lines", flat=True).first()
    seconds = (job.finished_at - job.started_at).total_seconds() if job.started_at and job.finished_at else 0.0
    return {
        "command": "complete",
        "bill_to_token": job.bill_to,
        "pay_to_lnurl": job.worker.payout_address if job.worker_id else "",
        "job_id": job.public_id,
        "kind": "fine_tune",
        "model": job.model,
        "model_size": job.model_size,
        "usage": {"job": "fine_tune", "training_examples": examples or 0, "n_epochs": job.hyperparameters.get("n_epochs")},
        "duration": round(seconds, 3),
        "pay_worker": True,
    }


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


# The request path's database calls, on the shared database threads (queenbee_site/db.py):
# no new thread and database connection per request.
_key_facts = on_db_threads(key_facts)
