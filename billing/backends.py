"""Who bills: the local ledger or the remote BILLING_URL backend, chosen once, at start.

`choose()` runs from BillingConfig.ready (and again when a test changes
BILLING_URL); services ask `active()` for the backend and never read the setting.
Both backends offer the same operations:

- `voucher`: what api.auth asks about tokens that are not our keys (None: nobody
  vouches, such a token is a 401);
- `admit(caller, facts)`: refuse a request its payer cannot pay for (429);
- `bill(work)`: bill a succeeded job or fine-tune, in the caller's transaction;
- `pay_verifier(payout)`: pay a counted verification's verifier, in the verdict's transaction;
- `deliver_queued()`: after such a transaction, send what it queued.
"""

import logging
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.core.signals import setting_changed
from django.utils import timezone

from api import auth
from api.errors import BillingUnavailable, InsufficientQuota, Unauthorized
from runtime.process import Stop, Task

from . import ledger, outbox, remote
from .models import LedgerEntry, OutboxMessage

if TYPE_CHECKING:
    from .services import KeyFacts, VerifierPayout

log = logging.getLogger(__name__)


class Billable(Protocol):
    """A succeeded piece of work to bill: an inference job (billing.services.JobBill)
    or a fine-tune (finetune.billing.FineTuneBill)."""

    link: dict[str, int]  # {"job_id": …} or {"fine_tune_id": …}: what its ledger and outbox rows point at
    api_key_id: int | None
    bill_to: str  # the caller's token, which a remote backend bills
    charge_caller: bool  # False: a proof-of-work job
    pay_worker: bool
    hold: bool  # under verification: the earning (or remote `complete`) waits for the verdict
    owner_key_hash: str  # the worker owner's auth-key hash ("": nobody to pay)

    def cost(self) -> int:
        """Credits by the price table."""

    def complete_command(self) -> dict[str, Any]:
        """The remote backend's `complete` for it."""


class LocalLedger:
    """Accounts and credits in our own database (billing/ledger.py)."""

    voucher = None
    holds_completes = False  # no outbox: nothing waits for a verdict to be sent

    async def admit(self, caller: auth.Caller, facts: "KeyFacts") -> None:
        if facts.account_id is not None and facts.balance < settings.BILLING_MIN_BALANCE:
            raise InsufficientQuota("Your account has no credits left. Top it up to continue.")

    def bill(self, work: Billable) -> bool:
        account_id = ledger.paying_account(api_key_id=work.api_key_id)
        if account_id is None or not work.charge_caller:
            return False  # the bypass token, a key without an account, or a proof-of-work job
        ledger.charge_and_pay_owner(
            account_id=account_id, amount=work.cost(), owner_key_hash=work.owner_key_hash,
            pay_worker=work.pay_worker, hold=work.hold, **work.link,
        )
        return False

    def pay_verifier(self, payout: "VerifierPayout") -> bool:
        """Credit the verifier's owner (a `verify_earning` row pointing at the checked job).
        The credits are the operator's: no account is debited for them."""
        owner = ledger.worker_owner_account(owner_key_hash=payout.owner_key_hash)
        if owner is None or payout.credits <= 0:
            return False
        ledger.credit(
            account_id=owner, amount=payout.credits, kind=LedgerEntry.Kind.VERIFY_EARNING, job_id=payout.job.pk, note=payout.note()
        )
        return False

    def deliver_queued(self) -> None:
        pass  # nothing is sent anywhere

    def tasks(self) -> tuple[Task, ...]:
        return ()


class RemoteBilling:
    """The original's billing backend at BILLING_URL: `check` before work, `complete`
    after it, through the outbox (billing/outbox.py). Also api.auth's voucher."""

    holds_completes = True  # a verified job's `complete` waits in the outbox for its verdict

    @property
    def voucher(self) -> "RemoteBilling":
        return self

    def recent(self, token: str) -> remote.CheckResult | None:
        return remote.recent_check(token)

    async def check(self, token: str) -> remote.CheckResult:
        """The backend's cached `check` of a token; 503 when it does not answer."""
        try:
            return await remote.check(token)
        except remote.BillingError as exc:
            log.warning("billing check failed: %s", exc)
            raise BillingUnavailable("The billing service is unavailable; retry shortly.") from None

    async def admit(self, caller: auth.Caller, facts: "KeyFacts") -> None:
        # Authentication already asked for a token we do not hold, so this is mostly
        # the answer it cached (no I/O); our own keys are asked here, as always.
        result = await self.check(caller.bill_to)
        if not result.ok:
            if result.user_id is None:
                raise Unauthorized("Incorrect API key provided.")
            raise InsufficientQuota("Insufficient funds in your account.")

    def bill(self, work: Billable) -> bool:
        """Queue its `complete`; True when it is due now (not held for a verdict)."""
        if not work.charge_caller or not work.bill_to:
            return False  # a proof-of-work job, the bypass token, or billed already
        state = OutboxMessage.State.HELD if work.hold else OutboxMessage.State.PENDING
        OutboxMessage.objects.create(payload=work.complete_command(), state=state, next_attempt_at=timezone.now(), **work.link)
        return state == OutboxMessage.State.PENDING

    def pay_verifier(self, payout: "VerifierPayout") -> bool:
        """Queue a `complete` of kind "verify" that bills nobody and pays the verifier's
        lnurl (only with BILLING_REMOTE_VERIFY_PAYOUTS). Only for a job the backend was
        told of (its own `complete` has an outbox row, sent or dropped as refuted): it
        prices the scored tokens itself, and never billed a proof of work or the bypass
        token's job, so it pays no verifier for one. True when it is due now."""
        if not settings.BILLING_REMOTE_VERIFY_PAYOUTS or not payout.payout_address:
            return False
        if not OutboxMessage.objects.filter(job_id=payout.job.pk).exists():
            return False
        OutboxMessage.objects.create(payload=payout.complete_command(), verified_job_id=payout.job.pk, next_attempt_at=timezone.now())
        return True

    def deliver_queued(self) -> None:
        outbox.ensure_delivery(wake=True)

    def tasks(self) -> tuple[Task, ...]:
        """The outbox's delivery loop, run by the process runtime; its drain step sends what is due once more."""
        return (Task(name="billing.outbox", order=Stop.FLUSH, start=outbox.delivery.start, stop=outbox.flush),)


_active: LocalLedger | RemoteBilling = LocalLedger()


def active() -> LocalLedger | RemoteBilling:
    return _active


def choose() -> None:
    """Pick the backend from BILLING_URL and install its voucher into api.auth."""
    global _active
    _active = RemoteBilling() if settings.BILLING_URL else LocalLedger()
    auth.install_voucher(_active.voucher)


def _setting_changed(*, setting: str, **kwargs) -> None:
    if setting == "BILLING_URL":
        choose()


setting_changed.connect(_setting_changed, dispatch_uid="billing-backend")
