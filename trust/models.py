"""Trust history and verifications. The state itself is `workers.Worker.trust_state`."""

from django.db import models

from workers.models import TrustState, Worker


class TrustEvent(models.Model):
    """One thing that happened to an identity's trust, with the state before and after."""

    class Kind(models.TextChoices):
        VERIFIED = "verified"  # a verification passed
        REFUTED = "refuted"  # a verification failed
        USAGE = "usage"  # reported usage outside the bounds
        CANARY = "canary"  # a canary's answer was not the known one
        OPERATOR = "operator"  # trusted, quarantined or released in the admin

    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="trust_events")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    from_state = models.CharField(max_length=12, choices=TrustState.choices)
    to_state = models.CharField(max_length=12, choices=TrustState.choices)
    job_id = models.CharField(max_length=64, blank=True, help_text="Public id of the job concerned.")
    detail = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.from_state} → {self.to_state}"


class Verification(models.Model):
    """A finished job re-scored by another worker serving the same model."""

    class Status(models.TextChoices):
        PENDING = "pending"
        PASSED = "passed"
        FAILED = "failed"
        UNAVAILABLE = "unavailable"  # no verifier in good standing was free in time, or it failed

    job_id = models.CharField(max_length=64, unique=True, help_text="Public id of the checked job.")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="verifications")
    verifier = models.ForeignKey(Worker, null=True, blank=True, on_delete=models.SET_NULL, related_name="verified_jobs")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=300, blank=True)
    tokens = models.PositiveIntegerField(default=0, help_text="Completion tokens, as the verifier counted them.")
    prompt_tokens = models.PositiveIntegerField(default=0, help_text="Prompt tokens, as the verifier counted them.")
    implausible = models.PositiveIntegerField(default=0, help_text="Tokens the model would not have sampled.")
    mean_gap = models.FloatField(default=0, help_text="Mean nats below the model's most likely token.")
    seconds = models.FloatField(default=0, help_text="The verifier's time.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.job_id}: {self.status}"


class Canary(models.Model):
    """A prompt whose temperature-0 answer with one model is known from an operator-trusted worker."""

    model = models.CharField(max_length=400)
    prompt = models.TextField()
    answer = models.TextField()
    answered_by = models.ForeignKey(Worker, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "prompt"], name="one_canary_answer_per_model_and_prompt")]

    def __str__(self) -> str:
        return f"{self.model}: {self.prompt[:40]}"


class CanaryRun(models.Model):
    """One canary sent to a worker, and how its answer compared with the known one."""

    canary = models.ForeignKey(Canary, on_delete=models.CASCADE, related_name="runs")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="canary_runs")
    passed = models.BooleanField(null=True, help_text="Empty: no answer came (an error or a timeout), nothing judged.")
    agreement = models.FloatField(help_text="Share of the known answer's words the worker's answer matched, in order (0-1).")
    answer = models.TextField(blank=True, help_text="What the worker answered, or its error (the first 2,000 characters).")
    seconds = models.FloatField(default=0, help_text="The worker's time on it.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.worker_id} on canary {self.canary_id}: { {True: 'passed', False: 'failed'}.get(self.passed, 'no answer') }"
