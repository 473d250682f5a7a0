"""The record of every request served, and `/v1/responses` answers kept for their owner."""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class Job(models.Model):
    """One API request served (or not) by a worker."""

    class Kind(models.TextChoices):
        CHAT = "chat"
        EMBEDDINGS = "embeddings"
        IMAGES = "images"

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"  # the caller went away

    public_id = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    model = models.CharField(max_length=300)
    model_size = models.FloatField(default=0)
    stream = models.BooleanField(default=False)
    api_key = models.ForeignKey("api.ApiKey", null=True, blank=True, on_delete=models.SET_NULL)
    caller = models.CharField(max_length=64, blank=True, help_text="Key prefix or 'bypass'.")
    worker = models.ForeignKey(
        "workers.Worker", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    status = models.CharField(max_length=16, choices=Status.choices)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=1)
    # A stream whose worker failed mid-answer and was continued on another worker
    # (routing/continuation.py): how many times. The failed parts are rows of
    # their own, `<public_id>-part1`, `-part2`…, failed and never billed; this row,
    # under the id the caller saw, carries the usage of the whole answer.
    continuations = models.PositiveSmallIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(default=False)
    # The worker reported usage outside what it sent and was asked (trust/usage.py):
    # Queenbee's own count was billed instead.
    usage_corrected = models.BooleanField(default=False)
    class Verification(models.TextChoices):
        PENDING = "pending"
        PASSED = "passed"
        FAILED = "failed"
        UNAVAILABLE = "unavailable"

    verification = models.CharField(
        max_length=12, blank=True, choices=Verification.choices, help_text="Empty: not checked (trust/services.py)."
    )
    images = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    queue_seconds = models.FloatField(default=0)
    first_token_seconds = models.FloatField(null=True, blank=True)
    total_seconds = models.FloatField(default=0)
    # A worker identity's first successful job is its proof of work: the worker
    # is not paid for it and the caller is not charged (DESIGN.md, trust).
    proof_of_work = models.BooleanField(default=False)
    charge_caller = models.BooleanField(default=True, help_text="False for a proof-of-work job.")
    pay_worker = models.BooleanField(default=True, help_text="False for a proof-of-work job.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.public_id


class StoredResponseQuerySet(models.QuerySet):
    def kept(self) -> "StoredResponseQuerySet":
        """The responses still within RESPONSES_KEEP_DAYS (all of them when it is 0)."""
        cutoff = expiry_cutoff()
        return self if cutoff is None else self.filter(created_at__gte=cutoff)

    def expired(self) -> "StoredResponseQuerySet":
        cutoff = expiry_cutoff()
        return self.none() if cutoff is None else self.filter(created_at__lt=cutoff)


def expiry_cutoff():
    """When a stored response made now would have expired (None: kept forever)."""
    if not settings.RESPONSES_KEEP_DAYS:
        return None
    return timezone.now() - timedelta(days=settings.RESPONSES_KEEP_DAYS)


class StoredResponse(models.Model):
    """A `/v1/responses` answer kept for its owner (`store`, on by default): retrieved by id,
    and continued by `previous_response_id`.

    `context` holds every item the answer was generated from (the continued
    response's context and output, then the request's input), so continuing
    one is a single read however long the conversation; a deleted response in
    the middle of a chain does not break the responses that followed it. The
    price is that each turn stores the conversation before it again (quadratic
    in the number of turns), which chat-sized conversations afford.

    Kept RESPONSES_KEEP_DAYS (30, as OpenAI keeps them): older ones are not
    found, and are deleted when their owner stores another response or by
    `manage.py purge_responses`.
    """

    objects = StoredResponseQuerySet.as_manager()

    public_id = models.CharField(max_length=64, unique=True, help_text="The Response id: the public id of its job.")
    owner = models.CharField(max_length=100, db_index=True, help_text="As files and fine-tunes: `key:<id>` or the caller's label.")
    model = models.CharField(max_length=400)
    context = models.JSONField(default=list)
    body = models.JSONField(help_text="The Response object as it was returned.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.public_id
