"""Reads for the public endpoints."""

from django.conf import settings
from django.db.models import Count, Q

from workers.liveness import live_connections
from workers.models import Connection
from workers.live import live_pool


def advertised_models() -> list[str]:
    """Models that connected workers advertise, then the configured defaults.

    A worker that ran a fine-tune advertises the result (`user:…`); fine-tuned
    models are listed to their owner only (finetune.selectors), never from here.
    """
    seen: dict[str, None] = {}
    for models in live_connections().values_list("advertised_models", flat=True):
        for name in models or ():
            if not name.startswith("user:"):
                seen.setdefault(name, None)
    for name in settings.DEFAULT_MODELS:
        seen.setdefault(name, None)
    return list(seen)


def worker_counts() -> dict[str, int]:
    """`connected` counts every live connection (the original left busy ones out)."""
    counts = live_connections().aggregate(
        connected=Count("pk"),
        busy=Count("pk", filter=~Q(state=Connection.State.FREE)),
    )
    return {
        "connected": counts["connected"],
        "busy": counts["busy"],
        "total": counts["connected"],
        "waiting": live_pool().line_length(),
    }
