"""Uploaded files, fine-tuning jobs, their events and checkpoints.

Everything a job needs lives here, so a restart loses nothing: a queued job is a
row any process may pick up, and a running job names the process running it
(`runner`) with a heartbeat, so another process can take over when it dies.

Owners are plain strings for now ("key:<api key id>", or "bypass"): the accounts
issue replaces them with users without touching the rest.
"""

import secrets

from django.db import models


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


class File(models.Model):
    """A file in storage: uploaded through /v1/files, or an artifact a fine-tune produced.

    An artifact row exists from its first chunk (status `uploading`, with the S3
    multipart upload id so an orphaned upload can be aborted) and only becomes
    visible through the API once complete (`processed`).
    """

    class Status(models.TextChoices):
        UPLOADING = "uploading"  # an artifact still arriving from a worker; never listed
        PROCESSED = "processed"

    class Kind(models.TextChoices):
        UPLOAD = "upload"
        LORA = "lora"
        GGUF = "gguf"

    public_id = models.CharField(max_length=40, unique=True)
    owner = models.CharField(max_length=100, db_index=True)
    purpose = models.CharField(max_length=32)
    filename = models.CharField(max_length=255)
    bytes = models.PositiveBigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROCESSED)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.UPLOAD)
    # Which storage holds it (see storage.realm): a process configured with another
    # storage must not hand out this name.
    realm = models.CharField(max_length=300)
    storage_name = models.CharField(max_length=600)
    upload_id = models.CharField(max_length=300, blank=True, help_text="S3 multipart upload in progress.")
    lines = models.PositiveIntegerField(null=True, blank=True, help_text="Examples in a training file.")
    job = models.ForeignKey("FineTuningJob", null=True, blank=True, on_delete=models.CASCADE, related_name="files")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "status", "created_at"], name="file_owner_listing")]

    def __str__(self) -> str:
        return self.public_id


class FineTuningJob(models.Model):
    """One fine-tune, through OpenAI's statuses.

    queued → running → succeeded | failed, and cancelled from either. While a
    process is starting or running it, `runner` names that process and
    `runner_seen_at` is its heartbeat; every change of status is a
    compare-and-set on (status, runner), so exactly one process runs a job and a
    cancel is never overwritten by a late frame.
    """

    class Status(models.TextChoices):
        VALIDATING_FILES = "validating_files"
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.VALIDATING_FILES, Status.QUEUED, Status.RUNNING)

    public_id = models.CharField(max_length=40, unique=True)
    owner = models.CharField(max_length=100, db_index=True)
    realm = models.CharField(max_length=300)
    model = models.CharField(max_length=400)
    model_size = models.FloatField()
    training_file = models.CharField(max_length=40)
    validation_file = models.CharField(max_length=40, blank=True)
    hyperparameters = models.JSONField()
    suffix = models.CharField(max_length=64, blank=True)
    seed = models.BigIntegerField(default=0)
    gpu_filter = models.JSONField(default=dict)
    # Base URL the job was created through: signed download URLs for local
    # storage point there unless PUBLIC_URL is set.
    base_url = models.CharField(max_length=300, blank=True)
    final_name = models.CharField(max_length=600, help_text="<owner folder>/<base>:<q_level>:<job id>")

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    fine_tuned_model = models.CharField(max_length=700, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    runner = models.CharField(max_length=200, blank=True)
    runner_seen_at = models.DateTimeField(null=True, blank=True)
    worker = models.ForeignKey("workers.Worker", null=True, blank=True, on_delete=models.SET_NULL, related_name="fine_tunes")
    # Who pays when the job succeeds: the caller's API key (its account, see
    # finetune/billing.py), and with BILLING_URL the caller's token,
    # which the remote backend bills. The token is kept only until the job is
    # billed (it moves to the outbox) or never will be (failed, cancelled).
    api_key = models.ForeignKey("api.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    bill_to = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "fine-tuning job"
        indexes = [models.Index(fields=["status", "runner", "created_at"], name="ftjob_schedule")]

    def __str__(self) -> str:
        return self.public_id


class JobEvent(models.Model):
    """What happened to a job, in order: our own status changes and every worker frame."""

    class Level(models.TextChoices):
        INFO = "info"
        WARN = "warn"
        ERROR = "error"

    public_id = models.CharField(max_length=40, unique=True)
    job = models.ForeignKey(FineTuningJob, on_delete=models.CASCADE, related_name="events")
    level = models.CharField(max_length=8, choices=Level.choices, default=Level.INFO)
    message = models.TextField()
    type = models.CharField(max_length=16, default="message")  # message | metrics
    data = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.message[:80]


class Checkpoint(models.Model):
    """A checkpoint the worker reported, with the metrics logged since the previous one.

    The original worker saves every 25 steps and uploads nothing, so a checkpoint
    is a record of progress, not a model one can use.
    """

    public_id = models.CharField(max_length=40, unique=True)
    job = models.ForeignKey(FineTuningJob, on_delete=models.CASCADE, related_name="checkpoints")
    step_number = models.PositiveIntegerField()
    metrics = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.job} step {self.step_number}"
