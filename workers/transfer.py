"""Stats files: the stats (keyed by worker id) named by worker identity, both ways.

Stats keeps its measurements by worker id; which identity a worker id is, and
creating an identity an imported file names, belong here.
"""

from typing import Any

from stats import selectors as stats_selectors
from stats import services as stats_services

from .models import Worker


def _identities() -> dict[int, tuple[str, int]]:
    """Every lasting identity (a worker without a key has none), with its GPU count."""
    rows = Worker.objects.filter(ephemeral=False).values_list("pk", "identity", "gpu_count")
    return {pk: (identity, gpu_count) for pk, identity, gpu_count in rows}


def export_stats() -> dict[str, Any]:
    return stats_selectors.export_stats(identities=_identities())


def export_original() -> dict[str, Any]:
    return stats_selectors.export_original(identities=_identities())


def import_stats(*, data: Any, source: str = "") -> stats_services.ImportReport:
    return stats_services.import_stats(data=data, worker_for=worker_for_identity, source=source)


def worker_for_identity(identity: str, gpu_count: int) -> int:
    """The worker id of `identity`, created if no worker ever connected with it."""
    pubkey, _, slug = identity.partition(":")
    worker, created = Worker.objects.get_or_create(
        identity=identity, defaults={"pubkey": pubkey, "slug": slug, "gpu_count": gpu_count}
    )
    if not created and not worker.gpu_count and gpu_count:
        Worker.objects.filter(pk=worker.pk).update(gpu_count=gpu_count)
    return worker.pk
