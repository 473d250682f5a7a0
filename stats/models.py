"""How fast each worker identity is, per model size, and whether it is trusted.

Rows are keyed by the worker identity (`workers.Worker`, named by a string:
the workers app builds on this one), not by a connection, so a worker's stats
survive reconnects and are one set for every process of a cluster. They are only ever changed by single-statement UPDATEs (stats/services),
so two processes recording at once never lose an update.
"""

from collections.abc import Iterable

from django.db import models


class Kind(models.TextChoices):
    TEXT = "text", "seconds per weighted token"
    IMAGE = "image", "seconds per image"


# A job outcome's kind besides those: embeddings are counted, never sampled
# (their cost per token is prompt evaluation only).
EMBEDDINGS = "embeddings"


def kind_for(capabilities: Iterable[str]) -> str:
    """The key a job is measured and estimated under: image jobs (the `sdxl`
    capability) on their own, every other job as text."""
    return Kind.IMAGE if "sdxl" in capabilities else Kind.TEXT


class WorkerStats(models.Model):
    """Counters, time to first token, punishment and proof of work of one identity."""

    worker = models.OneToOneField("workers.Worker", on_delete=models.CASCADE, primary_key=True, related_name="stats")
    inferences = models.PositiveIntegerField(default=0, help_text="Jobs this identity finished.")
    failures = models.PositiveIntegerField(
        default=0, help_text="Jobs it failed (errors, garbage, timeouts, disconnects)."
    )
    ttft_seconds = models.FloatField(null=True, blank=True, help_text="EMA of the time to the first token of streams.")
    ttft_count = models.PositiveIntegerField(default=0)
    punished_until = models.DateTimeField(null=True, blank=True, db_index=True)
    punished_at = models.DateTimeField(null=True, blank=True)
    punish_reason = models.CharField(max_length=16, blank=True)
    proven_at = models.DateTimeField(null=True, blank=True, help_text="When its proof-of-work job succeeded.")
    proof_job = models.CharField(max_length=64, blank=True, help_text="Public id of the proof-of-work job.")
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "worker stats"
        verbose_name_plural = "worker stats"

    def __str__(self) -> str:
        return self.worker.short_name


class SizeBin(models.Model):
    """The EMA of one identity for one model-size bin (or the image key).

    A row with no worker is the cluster's: the same EMA over every worker's
    samples (the original's `<all>`), the estimate for a worker never measured.
    It lives in this table so the choice reads a worker's bins and the cluster's
    in one query.
    """

    worker = models.ForeignKey("workers.Worker", null=True, blank=True, on_delete=models.CASCADE, related_name="stat_bins")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.TEXT)
    bin = models.SmallIntegerField(help_text="round(2·log2(model size)); see stats/ema.py.")
    value = models.FloatField(help_text="EMA of seconds per weighted token (text) or per image.")
    count = models.PositiveIntegerField(default=0, help_text="Samples behind the value.")
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["worker", "kind", "bin"], name="stats_sizebin_unique"),
            # NULLs are distinct in a unique index, so the cluster's rows need their own.
            models.UniqueConstraint(
                fields=["kind", "bin"], condition=models.Q(worker__isnull=True), name="stats_sizebin_cluster_unique"
            ),
        ]

    def __str__(self) -> str:
        who = self.worker.short_name if self.worker_id else "cluster"
        return f"{who} {self.kind} bin {self.bin}"


class ImportedRecord(models.Model):
    """One record of a stats file already merged: importing it again changes nothing."""

    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the record's canonical JSON.")
    identity = models.CharField(max_length=200)
    source = models.CharField(max_length=300, blank=True)
    imported_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.digest[:12]
