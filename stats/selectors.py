"""Reading worker stats, keyed by worker id: standings for the claim, the
public figures, exports. Who the workers are is the workers app's to say."""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from . import ema
from .models import Kind, SizeBin, WorkerStats
from .services import EXPORT_FORMAT, EXPORT_VERSION

# `perf` is rounded in /worker/detail: microseconds per token are plenty, and
# full floats would make two workers' entries needlessly distinct.
PERF_DECIMALS = 6


# The choice's one stats query, in SQL written once: built with the ORM it cost
# four times its execution on every request (bench/RESULTS.md).
_ESTIMATES_SQL = (
    f"SELECT worker_id, bin, value FROM {SizeBin._meta.db_table}"
    " WHERE kind = %s AND (worker_id IS NULL OR worker_id IN ({ids}))"
)


def estimates(*, worker_ids: Iterable[int], size: float, kind: str) -> dict[int, float | None]:
    """Estimated seconds per token (or per image) at `size` for each worker, in one query.

    A worker with no bins of this kind gets the cluster's estimate; None when
    nobody has been measured yet.
    """
    ids = sorted(set(worker_ids))
    bins: dict[int | None, dict[int, float]] = defaultdict(dict)
    with connection.cursor() as cursor:
        cursor.execute(_ESTIMATES_SQL.format(ids=", ".join(["%s"] * len(ids)) or "NULL"), [kind, *ids])
        for worker_id, bin, value in cursor.fetchall():
            bins[worker_id][bin] = value
    cluster = ema.estimate(bins.get(None, {}), size)
    return {w: (ema.estimate(bins[w], size) if w in bins else cluster) for w in ids}


@dataclass(frozen=True)
class Standing:
    """What the claim reads of a worker's stats, fresh each time: they change
    while the worker stays connected (a punishment, a first proof, a sample)."""

    punished: bool
    proven: bool  # its proof-of-work job succeeded
    estimate: float | None  # seconds per token (or image) at the job's size


def standings(*, worker_ids: Iterable[int], size: float, kind: str) -> dict[int, Standing]:
    """Each worker's punishment, proof and estimate, in two queries whatever their number."""
    ids = set(worker_ids)
    now = timezone.now()
    rows = WorkerStats.objects.filter(worker_id__in=ids).values_list("worker_id", "punished_until", "proven_at")
    flags = {pk: (until is not None and until > now, proven_at is not None) for pk, until, proven_at in rows}
    speed = estimates(worker_ids=ids, size=size, kind=kind)
    return {pk: Standing(*flags.get(pk, (False, False)), estimate=speed[pk]) for pk in ids}


@dataclass(frozen=True)
class Figures:
    """What /worker/detail shows of a worker's stats."""

    inferences: int
    punished: bool
    perf: float | None  # seconds per token at STATS_REFERENCE_SIZE, rounded


def public_figures(*, worker_ids: Iterable[int]) -> dict[int, Figures]:
    """Jobs done, punishment and text speed of each worker, in two queries."""
    ids = set(worker_ids)
    now = timezone.now()
    rows = WorkerStats.objects.filter(worker_id__in=ids).values_list("worker_id", "inferences", "punished_until")
    counted = {pk: (inferences, until is not None and until > now) for pk, inferences, until in rows}
    bins: dict[int, dict[int, float]] = defaultdict(dict)
    for worker_id, bin, value in SizeBin.objects.filter(kind=Kind.TEXT, worker_id__in=ids).values_list("worker_id", "bin", "value"):
        bins[worker_id][bin] = value
    figures = {}
    for pk in ids:
        inferences, punished = counted.get(pk, (0, False))
        perf = ema.estimate(bins.get(pk, {}), settings.STATS_REFERENCE_SIZE)
        figures[pk] = Figures(inferences, punished, round(perf, PERF_DECIMALS) if perf is not None else None)
    return figures


# --- Export ------------------------------------------------------------------------------


def export_stats(*, identities: dict[int, tuple[str, int]]) -> dict[str, Any]:
    """The stats of the workers in `identities` (worker id → identity and GPU
    count) and the cluster's, in the format `import_stats` reads back."""
    bins: dict[int | None, list[dict[str, Any]]] = defaultdict(list)
    for worker_id, kind, bin, value, count in SizeBin.objects.order_by("worker_id", "kind", "bin").values_list(
        "worker_id", "kind", "bin", "value", "count"
    ):
        bins[worker_id].append(
            {"kind": kind, "bin": bin, "size": round(ema.bin_size(bin), 3), "value": value, "count": count}
        )
    workers = []
    for s in WorkerStats.objects.filter(worker_id__in=identities):
        identity, gpu_count = identities[s.worker_id]
        workers.append(
            {
                "identity": identity,
                "gpu_count": gpu_count,
                "inferences": s.inferences,
                "failures": s.failures,
                "proven": s.proven_at is not None,
                "ttft": {"value": s.ttft_seconds, "count": s.ttft_count} if s.ttft_count else None,
                "bins": bins.get(s.worker_id, []),
            }
        )
    workers.sort(key=lambda w: w["identity"])
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "workers": workers, "cluster": bins.get(None, [])}


def export_original(*, identities: dict[int, tuple[str, int]]) -> dict[str, Any]:
    """The original coordinator's `{identity: {"dat": {bin: value}, "cnt": n}}`, text bins only.

    Several of our bins fall into one of the original's coarser bins; they are
    averaged weighted by their counts. The cluster's bins are `<all>`.
    """
    ours = export_stats(identities=identities)
    result = {w["identity"]: _original_entry(w["bins"], w["inferences"]) for w in ours["workers"]}
    if ours["cluster"]:
        result["<all>"] = _original_entry(
            ours["cluster"], sum(b["count"] for b in ours["cluster"] if b["kind"] == Kind.TEXT)
        )
    return result


def _original_entry(bins: list[dict[str, Any]], count: int) -> dict[str, Any]:
    merged: dict[int, tuple[float | None, int]] = {}
    for b in bins:
        if b["kind"] != Kind.TEXT:
            continue
        key = ema.original_bin(ema.bin_size(b["bin"]))
        merged[key] = ema.merge(*merged.get(key, (None, 0)), b["value"], b["count"])
    return {"dat": {str(k): v for k, (v, _) in sorted(merged.items())}, "cnt": count}
