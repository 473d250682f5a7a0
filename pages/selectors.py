"""Reads for the web pages: the network now, and one owner's own workers.

Nothing here returns a worker's identity, key, pubkey or address for the
public page; the owner page gets its own workers' labels only.
"""

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.db.models.functions import TruncMinute
from django.utils import timezone

from api.hashing import hash_secret
from api.model_names import InvalidModelName, parse_model
from billing.models import LedgerEntry
from routing.models import Job
from stats import ema
from stats.models import Kind, SizeBin, WorkerStats
from trust.models import Verification
from workers.liveness import live_connections
from workers.models import Connection, TrustState, Worker

# What each trust state means for an owner, in a line (workers/models.py TrustState).
TRUST_MEANING = {
    TrustState.NEW: "every job is checked and its earnings held until it passes its first checks",
    TrustState.VERIFIED: "passed its checks: earnings are paid at once, a share of its jobs is still checked",
    TrustState.SUSPECT: "failed a check: every job is checked again and its earnings held",
    TrustState.QUARANTINED: "gets no jobs until the operator releases it",
    TrustState.TRUSTED: "trusted by the operator",
}

# The jobs chart looks back this far, one bar per minute: enough to see a
# day's rush come and go on a phone screen without bars thinner than a pixel.
TIMELINE_HOURS = 3


@dataclass(frozen=True)
class ModelOffer:
    name: str
    size: float | None
    workers: int
    free: int
    busy: int
    tokens_per_second: float | None  # median of the serving workers' estimates at this size


@dataclass(frozen=True)
class SizeSpeed:
    bin: int
    size: float
    workers: int
    tokens_per_second: float  # median over the measured workers


@dataclass(frozen=True)
class Trust:
    state: str
    label: str
    meaning: str
    reason: str


@dataclass(frozen=True)
class OwnedWorker:
    label: str
    online: bool
    busy: bool
    worker_version: str
    capabilities: tuple[str, ...]
    gpu_count: int
    jobs: int
    failures: int
    punished: bool
    proven: bool
    last_seen: datetime
    speeds: dict[int, float]  # size bin → tokens per second
    # Only for an owner who pasted the worker's secret auth key (see owner_proves):
    # None for whoever pasted a public key or identity.
    trust: Trust | None = None


@dataclass(frozen=True)
class Earnings:
    credits: int
    jobs_paid: int
    unpaid_proof_jobs: int
    held: int  # credits held until the job or its worker is verified
    jobs_held: int
    forfeited: int  # held credits not paid: the work was refuted
    jobs_forfeited: int
    verifying: int = 0  # credits earned checking other workers' jobs (verify_earning rows)
    jobs_verified: int = 0


def _tokens_per_second(seconds_per_token: float | None) -> float | None:
    return 1 / seconds_per_token if seconds_per_token else None


def _text_bins(worker_ids: Iterable[int]) -> dict[int, dict[int, float]]:
    """Each worker's measured text bins: size bin → seconds per token."""
    rows = SizeBin.objects.filter(kind=Kind.TEXT, worker_id__in=set(worker_ids))
    bins: dict[int, dict[int, float]] = defaultdict(dict)
    for worker_id, bin, value in rows.values_list("worker_id", "bin", "value"):
        bins[worker_id][bin] = value
    return bins


def offered_models() -> list[ModelOffer]:
    """Every model live connections advertise, with how many serve it and how fast.

    Counts are of connections, as `/worker/stats` counts them. Fine-tuned
    models (`user:…`) belong to their owners and are left out, as in /v1/models.
    """
    rows = list(live_connections().values_list("worker_id", "state", "advertised_models"))
    bins = _text_bins(worker_id for worker_id, _, _ in rows)
    serving: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for worker_id, state, models in rows:
        for name in set(models or ()):
            if not name.startswith("user:"):
                serving[name].append((worker_id, state != Connection.State.FREE))
    offers = []
    for name, workers in serving.items():
        try:
            size = parse_model(name).size
        except InvalidModelName:
            size = None
        speeds = [
            tps
            for worker_id, _ in workers
            if size is not None and (tps := _tokens_per_second(ema.estimate(bins.get(worker_id, {}), size)))
        ]
        busy = sum(b for _, b in workers)
        offers.append(
            ModelOffer(name, size, len(workers), len(workers) - busy, busy, statistics.median(speeds) if speeds else None)
        )
    offers.sort(key=lambda o: (-o.workers, o.name))
    return offers


def speed_by_size() -> list[SizeSpeed]:
    """The network's median tokens per second in each size bin, over every measured identity."""
    per_bin: dict[int, list[float]] = defaultdict(list)
    for bin, value in SizeBin.objects.filter(kind=Kind.TEXT, worker__isnull=False, value__gt=0).values_list("bin", "value"):
        per_bin[bin].append(1 / value)
    return [
        SizeSpeed(bin, ema.bin_size(bin), len(speeds), statistics.median(speeds)) for bin, speeds in sorted(per_bin.items())
    ]


def network_medians() -> dict[int, float]:
    """The network's median tokens per second by size bin: what an owner's chart compares against."""
    return {s.bin: s.tokens_per_second for s in speed_by_size()}


def worker_speeds(*, worker_id: int) -> dict[int, float]:
    """One worker's measured tokens per second by size bin."""
    return {b: 1 / v for b, v in _text_bins([worker_id]).get(worker_id, {}).items() if v > 0}


def jobs_per_minute(*, now: datetime | None = None, hours: int = TIMELINE_HOURS) -> list[tuple[datetime, int]]:
    """Jobs started in each minute of the last `hours`, oldest first, zeros included."""
    end = (now or timezone.now()).replace(second=0, microsecond=0)
    start = end - timedelta(hours=hours) + timedelta(minutes=1)
    counts = dict(
        Job.objects.filter(created_at__gte=start)
        .annotate(minute=TruncMinute("created_at"))
        .order_by()
        .values("minute")
        .annotate(n=Count("pk"))
        .values_list("minute", "n")
    )
    return [(minute, counts.get(minute, 0)) for minute in (start + timedelta(minutes=i) for i in range(hours * 60))]


# --- One owner's workers ------------------------------------------------------------------


def owned_workers_filter(query: str) -> Q:
    """The workers `query` owns, by the identifiers `/worker/detail?query=` accepts
    (workers.selectors.worker_detail): a pubkey or identity, the auth key the
    workers connect with (an API key used as one too), or a user id (`uid:<id>`).
    Nothing matches an empty query."""
    if not query:
        return Q(pk__in=[])
    return Q(pubkey=query) | Q(identity=query) | Q(owner_key_hash__in=[hash_secret(query), hash_secret(f"uid:{query}")])


def owner_proves(query: str) -> Q:
    """The workers whose owner `query` proves to be, with the secret auth key itself.

    The same rule as /worker/detail's trust fields (workers.selectors.worker_detail):
    a pubkey, an identity or a bare user id is public, so it shows the public
    stats only; trust, earnings and holds need the secret the workers connect with.
    """
    return Q(owner_key_hash=hash_secret(query)) if query else Q(pk__in=[])


def _trust(worker: Worker) -> Trust:
    state = TrustState(worker.trust_state) if worker.trust_state in TrustState.values else None
    return Trust(
        state=worker.trust_state,
        label=state.label if state else worker.trust_state,
        meaning=TRUST_MEANING.get(state, ""),
        reason=worker.trust_reason,
    )


def key_holder_proves(pubkey: str) -> Q:
    """The workers of a public key whose holder signed the owner page's challenge with it."""
    return Q(pubkey=pubkey) if pubkey else Q(pk__in=[])


def owned_workers(*, query: str, proof: Q | None = None) -> list[OwnedWorker]:
    """The workers `query` owns, connected or not, online ones first; with their
    trust only where `proof` holds (by default: `query` is their secret auth key)."""
    workers = list(Worker.objects.filter(owned_workers_filter(query)).order_by("identity"))
    ids = [w.pk for w in workers]
    proven_ids = set(Worker.objects.filter(proof if proof is not None else owner_proves(query), pk__in=ids).values_list("pk", flat=True))
    live: dict[int, list[str]] = defaultdict(list)
    for worker_id, state in live_connections().filter(worker_id__in=ids).values_list("worker_id", "state"):
        live[worker_id].append(state)
    stats = {s.worker_id: s for s in WorkerStats.objects.filter(worker_id__in=ids)}
    bins = _text_bins(ids)
    now = timezone.now()
    owned = []
    for w in workers:
        s = stats.get(w.pk)
        states = live.get(w.pk, [])
        owned.append(
            OwnedWorker(
                label=f"{w.short_name} · {w.slug}" if w.slug else w.short_name,
                online=bool(states),
                busy=any(state != Connection.State.FREE for state in states),
                worker_version=w.worker_version,
                capabilities=tuple(w.capabilities or ()),
                gpu_count=w.gpu_count,
                jobs=s.inferences if s else 0,
                failures=s.failures if s else 0,
                punished=bool(s and s.punished_until and s.punished_until > now),
                proven=bool(s and s.proven_at),
                last_seen=w.last_seen,
                speeds={b: 1 / v for b, v in bins.get(w.pk, {}).items() if v > 0},
                trust=_trust(w) if w.pk in proven_ids else None,
            )
        )
    owned.sort(key=lambda o: (not o.online, o.label))
    return owned


def owner_earnings(*, proof: Q) -> Earnings:
    """What the ledger paid, holds and forfeited for the jobs (and fine-tunes) of the
    workers `proof` selects (owner_proves, key_holder_proves): never for a bare public key.

    A HOLD row stays open until its job gets an EARNING (settle_job paid it) or a
    FORFEIT (refund_job refuted it); billing/services.py.
    """
    owned = Worker.objects.filter(proof).values("pk")
    entries = LedgerEntry.objects.filter(Q(job__worker__in=owned) | Q(fine_tune__worker__in=owned))
    paid = entries.filter(kind=LedgerEntry.Kind.EARNING).aggregate(credits=Sum("amount"), jobs=Count("pk"))
    same_job = LedgerEntry.objects.filter(job_id=OuterRef("job_id"), job__isnull=False)
    holds = entries.filter(kind=LedgerEntry.Kind.HOLD, job__isnull=False).annotate(
        paid=Exists(same_job.filter(kind=LedgerEntry.Kind.EARNING)),
        forfeited=Exists(same_job.filter(kind=LedgerEntry.Kind.FORFEIT)),
    )
    held = holds.filter(paid=False, forfeited=False).aggregate(credits=Sum("held"), jobs=Count("pk"))
    lost = holds.filter(forfeited=True).aggregate(credits=Sum("held"), jobs=Count("pk"))
    unpaid = Job.objects.filter(worker__in=owned, proof_of_work=True).count()
    # A verifier's pay points at the job it checked (another owner's); its verifier is the Verification's.
    checked = Verification.objects.filter(verifier__in=owned).values("job_id")
    verifying = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.VERIFY_EARNING, job__public_id__in=checked).aggregate(
        credits=Sum("amount"), jobs=Count("pk")
    )
    return Earnings(
        credits=paid["credits"] or 0,
        jobs_paid=paid["jobs"],
        unpaid_proof_jobs=unpaid,
        held=held["credits"] or 0,
        jobs_held=held["jobs"],
        forfeited=lost["credits"] or 0,
        jobs_forfeited=lost["jobs"],
        verifying=verifying["credits"] or 0,
        jobs_verified=verifying["jobs"],
    )
