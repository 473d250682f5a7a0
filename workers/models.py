"""Who the workers are, and which of them are connected right now."""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


def default_expiry():
    return timezone.now() + timedelta(seconds=settings.PROCESS_GRACE)


class ServerProcess(models.Model):
    """One Queenbee process. Its heartbeat keeps its connections alive in the registry.

    Liveness is per process, not per connection: 10,000 idle workers cost one
    heartbeat write, and a process that dies takes all its rows with it once
    its heartbeat is older than PROCESS_GRACE.
    """

    name = models.CharField(max_length=200, unique=True)
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(db_index=True)
    # Heartbeat plus the process's own grace period. Each process says when it
    # should be presumed dead, so processes with different settings (or a slow
    # one next to a fast one) never sweep each other early.
    expires_at = models.DateTimeField(db_index=True, default=default_expiry)
    stopping = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.name


class TrustState(models.TextChoices):
    NEW = "new"  # every job verified, earnings held
    VERIFIED = "verified"  # passed its first verifications; a share of its work is checked
    SUSPECT = "suspect"  # failed a check: every job verified again, earnings held
    QUARANTINED = "quarantined"  # gets no jobs until an operator releases it
    TRUSTED = "trusted"  # by the operator


# Identities whose work and verdicts count as in good standing.
GOOD_STANDING = (TrustState.VERIFIED, TrustState.TRUSTED)


class Worker(models.Model):
    """A worker identity (`pubkey[:slug]`) and what it last said about itself."""

    identity = models.CharField(max_length=200, unique=True)
    pubkey = models.CharField(max_length=64, blank=True, db_index=True)
    slug = models.CharField(max_length=64, blank=True)
    # A worker without a key gets an identity that lives as long as its connection.
    ephemeral = models.BooleanField(default=False)
    # SHA-256 of the owner's auth key: enough to find an owner's workers, useless to a thief.
    owner_key_hash = models.CharField(max_length=64, blank=True, db_index=True)
    payout_address = models.CharField(max_length=255, blank=True)
    worker_version = models.CharField(max_length=64, blank=True)
    capabilities = models.JSONField(default=list)
    cpu_count = models.PositiveIntegerField(default=0)
    ram_bytes = models.PositiveBigIntegerField(default=0)
    disk_space_mib = models.PositiveBigIntegerField(default=0)
    gpus = models.JSONField(default=dict)
    gpu_count = models.PositiveIntegerField(default=0)
    advertised_models = models.JSONField(default=list)
    # Trust (trust/services.py moves it; its history is trust.TrustEvent). Kept
    # on the identity because every claim filters on it.
    trust_state = models.CharField(max_length=12, choices=TrustState.choices, default=TrustState.NEW, db_index=True)
    trust_reason = models.CharField(max_length=300, blank=True)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.short_name

    @property
    def short_name(self) -> str:
        """A label safe for the admin and logs: never the whole key."""
        return f"{self.identity[:10]}…" if len(self.identity) > 10 else self.identity


class Connection(models.Model):
    """A live websocket of a worker, held by one process.

    The hardware columns are copied from this socket's own connect message (GPU
    fields are not signed, so one identity's sockets may claim different things)
    and indexed so the database filters candidates, not Python.
    """

    class State(models.TextChoices):
        FREE = "free"
        BUSY = "busy"  # serving a job, or draining one its caller abandoned
        AWAY = "away"  # the worker said {"busy": true} (browser workers)

    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="connections")
    process = models.ForeignKey(ServerProcess, on_delete=models.CASCADE, related_name="connections")
    channel_name = models.CharField(max_length=200, unique=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.FREE)
    capabilities_text = models.CharField(max_length=500)  # ",llama-infer,sdxl,"
    version_key = models.CharField(max_length=32, blank=True)
    is_web = models.BooleanField(default=False)
    gpu_memory_mib = models.FloatField(default=0)
    ram_bytes = models.PositiveBigIntegerField(default=0)
    disk_space_mib = models.PositiveBigIntegerField(default=0)
    # The context window in tokens it announced (Queenbee's additive connect
    # field); 0 when it said nothing, as the original worker never does.
    context_length = models.PositiveIntegerField(default=0)
    advertised_models = models.JSONField(default=list)
    # Where the socket comes from, so a verifier is never at its checked worker's address.
    address = models.CharField(max_length=64, blank=True)
    current_model = models.CharField(max_length=300, blank=True)
    job_id = models.CharField(max_length=64, blank=True)
    reply_channel = models.CharField(max_length=200, blank=True)
    connected_at = models.DateTimeField(auto_now_add=True)
    busy_since = models.DateTimeField(null=True, blank=True)
    stray_frames = models.PositiveIntegerField(default=0)
    bad_frames = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["state", "gpu_memory_mib"], name="conn_state_gpu")]

    def __str__(self) -> str:
        return f"{self.worker.short_name} on {self.process.name}"

    @staticmethod
    def capabilities_to_text(capabilities: tuple[str, ...] | list[str]) -> str:
        return "," + ",".join(sorted(set(capabilities))) + ","
