"""The one place that turns what happens into metrics and log lines.

Other modules call these hooks (one line each) and never build log lines or
touch metrics themselves. Every field is chosen here: no prompt, API key, worker
auth key, payout address or text a worker sent ever reaches a log line. Workers
appear by database id (the admin maps it to an identity), never by public key.
"""

import logging
import time
from typing import Any
from urllib.parse import urlsplit

from . import logs, metrics

requests_log = logging.getLogger("queenbee.requests")
workers_log = logging.getLogger("queenbee.workers")
jobs_log = logging.getLogger("queenbee.jobs")

# Probes and scrapes arrive every few seconds; their lines are DEBUG.
QUIET_ENDPOINTS = frozenset({"healthz", "readyz", "metrics"})
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Close codes Queenbee uses when it refuses a worker, as metric label values.
REFUSAL_REASONS = {
    1009: "frame_too_big",
    1012: "restarting",
    4001: "bad_signature",
    4002: "bad_message",
    4003: "identity_in_use",
    4008: "timeout",
    4009: "frame_too_big",
    4029: "rate_limited",
}


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def safe_model_name(name: str) -> str:
    """A model name without what a URL may hide in it (user:password@, ?token=)."""
    if "://" not in name:
        return name[:300]
    parts = urlsplit(name)
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"[:300]


def request_finished(*, method: str, endpoint: str, path: str, status: int, seconds: float, ip: str) -> None:
    method = method if method in KNOWN_METHODS else "other"
    metrics.http_requests.labels(endpoint, method, str(status)).inc()
    metrics.http_duration.labels(endpoint).observe(seconds)
    level = logging.DEBUG if endpoint in QUIET_ENDPOINTS else logging.INFO
    logs.event(requests_log, "request", level=level, method=method, path=path[:200], endpoint=endpoint, status=status, ms=_ms(seconds), ip=ip)


def worker_connected(*, worker_id: int, connection_id: int, info: Any, ip: str) -> None:
    metrics.worker_connects.inc()
    logs.event(
        workers_log, "worker_connect", worker=worker_id, connection=connection_id, ip=ip, signed=bool(info.identity),
        version=info.worker_version, capabilities=list(info.capabilities), gpus=info.gpu_count,
        gpu_mib=round(info.gpu_memory_mib), ram_gb=round(info.ram_bytes / 1e9, 1), models=len(info.models),
    )


def worker_disconnected(guard: Any, *, worker_id: int | None, connection_id: int, code: int) -> None:
    """A registered socket closed. `guard` is its workers.limits.SocketLimits."""
    metrics.worker_disconnects.inc()
    logs.event(
        workers_log, "worker_disconnect", worker=worker_id, connection=connection_id, ip=guard.ip, code=code,
        seconds=round(time.monotonic() - guard.opened_at, 1),
    )


def worker_refused(*, code: int, reason: str, ip: str, registered: bool) -> None:
    """Queenbee closes a worker's socket. `reason` is our own text, never the worker's."""
    metrics.worker_refusals.labels(REFUSAL_REASONS.get(code, "other")).inc()
    logs.event(workers_log, "worker_refused", level=logging.WARNING, ip=ip, code=code, reason=reason[:200], registered=registered)


def worker_punished(*, reason: str) -> None:
    """For stats: a worker's EMA was penalised. `reason` is a short fixed word."""
    metrics.worker_punishments.labels(reason).inc()


def _error_reason(status: str, error: str) -> str | None:
    if status != "failed" or not error:
        return None
    if error.startswith("Timed out"):
        return "timeout"
    if error.startswith("The worker could not load"):
        return "model_not_found"
    if error.startswith(("The worker refused the request", "The prompt is too long")):
        return "bad_request"  # the caller's (routing/services.py): not a worker error
    return "error"


def job_recorded(*, spec: Any, handle: Any, public_id: str, status: str, error: str, attempts: int, usage: Any) -> None:
    """A job is over (routing.services.record_job). `error` is classified, never logged."""
    total = time.monotonic() - handle.started_at
    first = (handle.first_frame_at - handle.started_at) if handle.first_frame_at else None
    kind = str(spec.kind)
    metrics.jobs.labels(kind, status).observe(total)
    metrics.queue_wait.labels(kind).observe(handle.queue_seconds)
    if first is not None:
        metrics.first_token.labels(kind).observe(first)
    rate = usage.completion_tokens / total if status == "succeeded" and usage.completion_tokens and total > 0 else None
    if rate is not None:
        metrics.tokens_per_second.labels(kind).observe(rate)
    reason = _error_reason(status, error)
    if reason and reason not in ("model_not_found", "bad_request"):
        metrics.worker_errors.labels(kind, reason).inc()
    logs.event(
        jobs_log, "job", job=public_id, kind=kind, model=safe_model_name(spec.model.name), stream=spec.stream,
        worker=handle.claim.worker_id, connection=handle.claim.connection_id, status=status, error=reason,
        attempt=attempts, queue_ms=_ms(handle.queue_seconds), first_token_ms=_ms(first), total_ms=_ms(total),
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
        tokens_per_s=round(rate, 1) if rate is not None else None,
    )
