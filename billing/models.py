"""Accounts, their credit balances, the ledger that explains every balance, prices,
and the outbox of commands for a remote billing backend.

Balances are whole credits. A balance only ever changes together with a ledger
row, in one transaction, so the ledger always adds up to the balance.
"""

from django.db import models
from django.db.models import Q


class Account(models.Model):
    """Who pays for API keys (`ApiKey.account`) and who earns from workers.

    A worker owner is known by the SHA-256 of the auth key its workers send. When
    that hash is one of the account's API keys, the earnings go to the key's
    account; otherwise to an account of its own (`worker_key_hash`).
    """

    name = models.CharField(max_length=200)
    balance = models.BigIntegerField(default=0, help_text="Credits.")
    worker_key_hash = models.CharField(
        max_length=64, null=True, blank=True, unique=True, help_text="SHA-256 of a worker auth key this account earns for."
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Per API key of this account; empty: the RATE_LIMIT_REQUESTS_PER_MINUTE setting, 0: none."
    )
    concurrent_streams = models.PositiveIntegerField(
        null=True, blank=True, help_text="Per API key of this account; empty: the RATE_LIMIT_CONCURRENT_STREAMS setting, 0: none."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(balance__gte=0), name="account_balance_not_negative")]

    def __str__(self) -> str:
        return self.name


class LedgerEntry(models.Model):
    """One change of one balance. A job (inference or fine-tune) has at most one entry of each kind."""

    class Kind(models.TextChoices):
        CHARGE = "charge"  # a caller paid for a job
        EARNING = "earning"  # a worker owner was paid for a job
        TOP_UP = "top_up"  # credits bought or granted (admin, manage.py)
        ADJUSTMENT = "adjustment"
        HOLD = "hold"  # an earning held until the job or its worker is verified (`held`; the balance is unchanged)
        REFUND = "refund"  # a caller paid back for refuted work, or for usage a verifier counted lower
        FORFEIT = "forfeit"  # a held earning not paid: the work was refuted (amount 0)
        # A verifier's owner paid, by the operator, for checking the job (passed or refuted)
        VERIFY_EARNING = "verify_earning"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    job = models.ForeignKey("routing.Job", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries")
    fine_tune = models.ForeignKey(
        "finetune.FineTuningJob", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = models.BigIntegerField(help_text="Credits; negative for a charge.")
    balance_after = models.BigIntegerField()
    # What the job cost by the price table, when the balance could not cover it
    # all (several requests were admitted on the same last credits).
    unpaid = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0, help_text="Credits held for verification (HOLD rows).")
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "ledger entries"
        ordering = ["-created_at", "-pk"]
        constraints = [
            # A job recorded twice (a retry of the write, two processes) is billed once.
            models.UniqueConstraint(fields=["job", "kind"], condition=Q(job__isnull=False), name="ledger_once_per_job_and_kind"),
            # A fine-tune is billed once, in the transaction that marks it succeeded.
            models.UniqueConstraint(
                fields=["fine_tune", "kind"], condition=Q(fine_tune__isnull=False), name="ledger_once_per_fine_tune_and_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount:+d} ({self.account})"


def inference_jobs() -> models.Manager:
    """routing.Job's rows, reached through the ledger's foreign key.

    routing sits above billing, so billing names the Job model by string only.
    Two things need more than billing's own rows: trust (below routing too) writes
    a job's verification and verified usage through billing (set_verification,
    reprice_job), and /v1/usage sums the caller's jobs.
    """
    return LedgerEntry._meta.get_field("job").related_model._default_manager


class Price(models.Model):
    """Credits for one job of `kind` on a model of at least `min_size` (the largest such row wins).

    With no row for a kind, the BILLING_PRICE_* settings apply. A fine-tune's
    worker reports no token counts, so it is priced per job: `per_request` only.
    """

    class Kind(models.TextChoices):
        CHAT = "chat"
        EMBEDDINGS = "embeddings"
        IMAGES = "images"
        FINE_TUNE = "fine_tune"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    min_size = models.FloatField(default=0, help_text="Model size (about GB of weights) from which this row applies.")
    per_request = models.PositiveIntegerField(default=0)
    per_1k_prompt_tokens = models.PositiveIntegerField(default=0)
    per_1k_completion_tokens = models.PositiveIntegerField(default=0)
    per_image = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["kind", "min_size"]
        constraints = [models.UniqueConstraint(fields=["kind", "min_size"], name="price_per_kind_and_size")]

    def __str__(self) -> str:
        return f"{self.kind} from size {self.min_size:g}"


class OutboxMessage(models.Model):
    """A `complete` command for the remote billing backend, kept until it is delivered.

    For an inference job or a fine-tune (one row each at most), or the payout of
    the verifier that checked a job (`verified_job`, one at most). Written in the
    transaction that records the job or marks the fine-tune succeeded, so a billing outage (or a crash) loses no
    charge. A process claims a row by moving `claimed_until` forward with a
    compare-and-set UPDATE; only the process whose UPDATE matched sends it.
    """

    class State(models.TextChoices):
        # Waiting for its job's verification: sent once the job passes (or nobody
        # could check it), never when it is refuted (trust/services.py).
        HELD = "held"
        PENDING = "pending"
        DELIVERED = "delivered"
        GAVE_UP = "gave_up"

    job = models.OneToOneField("routing.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="outbox_message")
    fine_tune = models.OneToOneField(
        "finetune.FineTuningJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="outbox_message"
    )
    # A verifier's payout (`"kind": "verify"`) points at the job it checked, whose own
    # `complete` is `job`'s row.
    verified_job = models.OneToOneField(
        "routing.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="verifier_payout"
    )
    # The caller's token is the only way the original's backend knows whom to
    # bill; it is blanked once the message is delivered.
    payload = models.JSONField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_index=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="outbox_due")]

    def __str__(self) -> str:
        return f"outbox {self.pk} ({self.state})"
