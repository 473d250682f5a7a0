"""The local ledger's primitives: moving credits between accounts, one ledger row per move.

A balance only changes together with its ledger row, in one transaction. Many
requests of one account may finish at once: each debit locks the account's row
(`select_for_update`; SQLite takes its write lock at BEGIN) and takes at most
the balance, so a balance never goes below zero (a CHECK constraint says so
too); what it could not cover is written as `unpaid`.

Rows point at the work they are for by id (`job_id`: a routing.Job,
`fine_tune_id`: a finetune.FineTuningJob); billing sits below both apps.
"""

from django.conf import settings
from django.db import transaction
from django.db.models import F

from api.models import ApiKey

from . import prices
from .models import Account, LedgerEntry


def paying_account(*, api_key_id: int | None) -> int | None:
    """The account behind the API key (None: the bypass token, or a key without an account)."""
    if not api_key_id:
        return None
    return ApiKey.objects.filter(pk=api_key_id).values_list("account_id", flat=True).first()


def worker_owner_account(*, owner_key_hash: str) -> int | None:
    """The account that earns for a worker whose auth key hashes to `owner_key_hash`:
    the one whose API key is that auth key, else one of its own, made on first earning."""
    if not owner_key_hash:
        return None  # a worker without an auth key has nobody to pay
    account_id = ApiKey.objects.filter(key_hash=owner_key_hash).values_list("account_id", flat=True).first()
    if account_id is not None:
        return account_id
    account, _ = Account.objects.get_or_create(worker_key_hash=owner_key_hash, defaults={"name": f"worker owner {owner_key_hash[:8]}"})
    return account.pk


def charge_and_pay_owner(
    *, account_id: int, amount: int, owner_key_hash: str, pay_worker: bool = True, hold: bool = False,
    job_id: int | None = None, fine_tune_id: int | None = None,
) -> None:
    """Take up to `amount` from the caller's account and credit the worker's owner
    their share of what was taken (or hold it: a HOLD row, the balance unchanged),
    every row pointing at the job (or fine-tune)."""
    link = {"job_id": job_id, "fine_tune_id": fine_tune_id}
    charged = debit(account_id=account_id, amount=amount, **link)
    if not pay_worker or charged <= 0:
        return
    owner = worker_owner_account(owner_key_hash=owner_key_hash)
    earned = prices.worker_share(charged, settings.BILLING_WORKER_SHARE)
    if owner is None or earned <= 0:
        return
    if hold:
        balance = Account.objects.filter(pk=owner).values_list("balance", flat=True).get()
        LedgerEntry.objects.create(account_id=owner, kind=LedgerEntry.Kind.HOLD, amount=0, held=earned, balance_after=balance, **link)
    else:
        credit(account_id=owner, amount=earned, kind=LedgerEntry.Kind.EARNING, **link)


def debit(*, account_id: int, amount: int, job_id: int | None = None, fine_tune_id: int | None = None) -> int:
    """Take up to `amount` from the account for the job (or fine-tune); returns what was taken."""
    with transaction.atomic():
        balance = Account.objects.select_for_update().filter(pk=account_id).values_list("balance", flat=True).get()
        charged = min(amount, balance)
        Account.objects.filter(pk=account_id).update(balance=F("balance") - charged)
        LedgerEntry.objects.create(
            account_id=account_id, job_id=job_id, fine_tune_id=fine_tune_id, kind=LedgerEntry.Kind.CHARGE, amount=-charged,
            balance_after=balance - charged, unpaid=amount - charged,
        )
    return charged


def credit(
    *, account_id: int, amount: int, kind: str, job_id: int | None = None, fine_tune_id: int | None = None, note: str = ""
) -> LedgerEntry:
    """Add credits to an account, with its ledger row (in the caller's transaction, or its own)."""
    with transaction.atomic():
        balance = Account.objects.select_for_update().filter(pk=account_id).values_list("balance", flat=True).get()
        Account.objects.filter(pk=account_id).update(balance=F("balance") + amount)
        return LedgerEntry.objects.create(
            account_id=account_id, job_id=job_id, fine_tune_id=fine_tune_id, kind=kind, amount=amount,
            balance_after=balance + amount, note=note[:200],
        )
