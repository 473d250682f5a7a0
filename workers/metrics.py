"""The cluster's worker and waiting-line gauges for /metrics, read when scraped.

Registered into the process's metrics registry (runtime.metrics) when the app
is ready (apps.py).
"""

import logging

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily

from .liveness import live_connections
from .models import Connection
from .live import live_pool

log = logging.getLogger(__name__)

# Workers choose their capability strings; only these become label values (the
# rest count as "other"), so strangers cannot blow up the number of series.
KNOWN_CAPABILITIES = frozenset({"llama-infer", "llama-fine-tune", "fast-embed", "sdxl", "whisper"})


class ClusterCollector:
    """Worker and waiting-line gauges, read from the database when scraped."""

    def describe(self):
        # Without this, registering would run collect() (and a query) at import.
        return [
            GaugeMetricFamily("queenbee_workers_connected", "", labels=["capability"]),
            GaugeMetricFamily("queenbee_workers_busy", "", labels=["capability"]),
            GaugeMetricFamily("queenbee_waiting_requests", ""),
        ]

    def collect(self):
        try:
            rows = list(live_connections().values_list("capabilities_text", "state").annotate(n=Count("pk")))
            waiting = live_pool().line_length()
        except Exception:  # a scrape during a database outage still serves the process metrics
            log.warning("could not read the worker registry for /metrics", exc_info=True)
            return
        connected: dict[str, int] = {}
        busy: dict[str, int] = {}
        for capabilities_text, state, n in rows:
            for capability in {c if c in KNOWN_CAPABILITIES else "other" for c in capabilities_text.split(",") if c}:
                connected[capability] = connected.get(capability, 0) + n
                busy[capability] = busy.get(capability, 0) + (n if state != Connection.State.FREE else 0)
        yield _by_capability("queenbee_workers_connected", "Live worker connections in the cluster, by capability.", connected)
        yield _by_capability("queenbee_workers_busy", "Live worker connections busy or away, by capability.", busy)
        yield GaugeMetricFamily("queenbee_waiting_requests", "Requests waiting in line for a busy worker (cluster).", value=waiting)


def _by_capability(name: str, documentation: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["capability"])
    for capability, n in sorted(counts.items()):
        family.add_metric([capability], n)
    return family
