"""Reading worker stats: estimates for the choice, the public detail list, exports."""

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Q, Subquery
from django.utils import timezone

from workers.liveness import live_connections
from workers.models import Connection
from api.hashing import hash_secret

from . import ema
from .models import Kind, SizeBin, WorkerStats
from .services import EXPORT_FORMAT, EXPORT_VERSION

# `perf` is rounded in /worker/detail: microseconds per token are plenty, and
# full floats would make two workers' entries needlessly distinct.
PERF_DECIMALS = 6


def kind_for(capabilities: Iterable[str]) -> str:
    """Image jobs (the `sdxl` capability) are measured under their own key."""
    return Kind.IMAGE if "sdxl" in capabilities else Kind.TEXT


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


def worker_detail(*, query: str = "", caller_token: str = "") -> list[dict[str, Any]]:
    """Live workers, anonymised: what they run and how fast, never who they are.

    `query` keeps only the workers an identifier owns: a pubkey or identity, the
    auth key the worker connected with, or a user id (`uid:<id>`, as the original
    matched it). `query="user"` means the workers connected with the caller's own
    API key (`caller_token`).
    """
    connections = live_connections()
    # Trust states are shown only to whoever proves ownership with a secret (an
    # auth key, or the caller's own API key): a pubkey is public.
    owner_hashes = {hash_secret(caller_token)} if query == "user" and caller_token else {hash_secret(query)} if query else set()
    if query == "user":
        connections = (
            connections.filter(worker__owner_key_hash=hash_secret(caller_token)) if caller_token else connections.none()
        )
    elif query:
        connections = connections.filter(
            Q(worker__pubkey=query)
            | Q(worker__identity=query)
            | Q(worker__owner_key_hash__in=[hash_secret(query), hash_secret(f"uid:{query}")])
        )
    rows = list(
        connections.values_list(
            "state",
            "worker_id",
            "worker__worker_version",
            "capabilities_text",
            "worker__gpu_count",
            "worker__stats__inferences",
            "worker__stats__punished_until",
            "worker__owner_key_hash",
            "worker__trust_state",
            "worker__trust_reason",
        )
    )
    bins: dict[int, dict[int, float]] = defaultdict(dict)
    for worker_id, bin, value in SizeBin.objects.filter(
        kind=Kind.TEXT, worker_id__in=Subquery(connections.values("worker_id"))
    ).values_list("worker_id", "bin", "value"):
        bins[worker_id][bin] = value
    now = timezone.now()
    entries = []
    for state, worker_id, version, capabilities_text, gpu_count, inferences, punished_until, owner, trust, reason in rows:
        perf = ema.estimate(bins.get(worker_id, {}), settings.STATS_REFERENCE_SIZE)
        owned = {"trust": trust, "trust_reason": reason} if owner and owner in owner_hashes else {}
        entries.append(
            {
                **owned,
                "busy": state != Connection.State.FREE,
                "worker_version": version,
                "capabilities": [c for c in capabilities_text.split(",") if c],
                "gpu_cnt": gpu_count,
                "perf": round(perf, PERF_DECIMALS) if perf is not None else None,
                "cnt": inferences or 0,
                "punished": punished_until is not None and punished_until > now,
            }
        )
    # Free before busy (as the original listed them), then fastest first: an
    # order that says nothing about when or where each worker connected.
    entries.sort(key=lambda e: (e["busy"], e["perf"] is None, e["perf"] or 0, e["worker_version"]))
    return entries


# --- Export ------------------------------------------------------------------------------


def export_stats() -> dict[str, Any]:
    """Every identity's stats and the cluster's, in the format `import_stats` reads back."""
    bins: dict[int | None, list[dict[str, Any]]] = defaultdict(list)
    for worker_id, kind, bin, value, count in SizeBin.objects.order_by("worker_id", "kind", "bin").values_list(
        "worker_id", "kind", "bin", "value", "count"
    ):
        bins[worker_id].append(
            {"kind": kind, "bin": bin, "size": round(ema.bin_size(bin), 3), "value": value, "count": count}
        )
    workers = []
    stats = WorkerStats.objects.filter(worker__ephemeral=False).select_related("worker").order_by("worker__identity")
    for s in stats:
        workers.append(
            {
                "identity": s.worker.identity,
                "gpu_count": s.worker.gpu_count,
                "inferences": s.inferences,
                "failures": s.failures,
                "proven": s.proven_at is not None,
                "ttft": {"value": s.ttft_seconds, "count": s.ttft_count} if s.ttft_count else None,
                "bins": bins.get(s.worker_id, []),
            }
        )
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "workers": workers, "cluster": bins.get(None, [])}


def export_original() -> dict[str, Any]:
    """The original coordinator's `{identity: {"dat": {bin: value}, "cnt": n}}`, text bins only.

    Several of our bins fall into one of the original's coarser bins; they are
    averaged weighted by their counts. The cluster's bins are `<all>`.
    """
    ours = export_stats()
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
