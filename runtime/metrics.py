"""Prometheus metrics of this process, served at /metrics.

Counters and histograms live in this process's own registry and count what
this process saw (its HTTP requests, its worker sockets, the jobs it served);
scrape every process and let Prometheus add them up. The worker and waiting-line
gauges (workers/metrics.py registers them here) are read at scrape time, so
they describe the whole cluster and every process reports the same value:
aggregate those with max().
"""

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest

registry = CollectorRegistry()
ProcessCollector(registry=registry)

# Chat jobs range from a fraction of a second to the 600 s job limit.
SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

http_requests = Counter(
    "queenbee_http_requests", "HTTP requests answered, by URL pattern, method and status.",
    ["endpoint", "method", "status"], registry=registry,
)
http_duration = Histogram(
    "queenbee_http_request_duration_seconds",
    "Time to answer an HTTP request (to the end of the body, streams included).",
    ["endpoint"], buckets=SECONDS, registry=registry,
)
worker_connects = Counter("queenbee_worker_connects", "Worker sockets registered.", registry=registry)
worker_disconnects = Counter("queenbee_worker_disconnects", "Registered worker sockets closed.", registry=registry)
worker_refusals = Counter(
    "queenbee_worker_refusals",
    "Worker sockets closed by Queenbee for breaking the protocol or a limit, by reason.",
    ["reason"], registry=registry,
)
worker_errors = Counter(
    "queenbee_worker_errors", "Jobs a worker failed (an error, garbage, a disconnect, or a timeout), by kind and reason.",
    ["kind", "reason"], registry=registry,
)
worker_punishments = Counter(
    "queenbee_worker_punishments", "Penalties recorded in a worker's stats, by reason.", ["reason"], registry=registry
)
jobs = Histogram(
    "queenbee_job_duration_seconds", "Jobs from sending to the worker until its last frame, by kind and outcome.",
    ["kind", "status"], buckets=SECONDS, registry=registry,
)
queue_wait = Histogram(
    "queenbee_queue_wait_seconds", "Time a job waited for a free worker.", ["kind"], buckets=SECONDS, registry=registry
)
first_token = Histogram(
    "queenbee_time_to_first_token_seconds", "From sending a job to its first frame (model loading included).",
    ["kind"], buckets=SECONDS, registry=registry,
)
tokens_per_second = Histogram(
    "queenbee_tokens_per_second", "Completion tokens per second of a succeeded job, prompt evaluation included.",
    ["kind"], buckets=(1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000), registry=registry,
)


def render() -> bytes:
    """The text exposition of every metric (runs the database queries: call from sync code)."""
    return generate_latest(registry)
