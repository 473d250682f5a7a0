"""Recording what workers did: samples, punishments, proof of work, imports.

Every change is a single UPDATE whose new value is computed by the database from
the old one (`value = alpha·value + (1 − alpha)·sample`, `count = count + 1`).
Two processes may record a sample for the same worker at the same moment; each
UPDATE takes the row's lock and the second one reads the first one's result, so
none is lost. A row that does not exist yet is INSERTed; if another process
inserted it first, the unique constraint refuses ours and we UPDATE instead.
"""

import enum
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, DateTimeField, F, FloatField, Value, When
from django.db.models.expressions import ExpressionWrapper
from django.utils import timezone

from . import ema
from .models import ImportedRecord, Kind, SizeBin, WorkerStats


class Failure(enum.StrEnum):
    """Why a job failed, as far as the worker is concerned."""

    ERROR = "error"  # the worker answered {"error": …}
    BUSY = "busy"  # the worker answered {"error": "busy"}: punished briefly
    GARBAGE = "garbage"  # an undecodable frame or a malformed reply
    TIMEOUT = "timeout"  # no first token, or a gap between tokens, in time
    DISCONNECT = "disconnect"  # the socket closed mid-job
    SLOW = "slow"  # finished, but far slower than any worker should be
    REFUTED = "refuted"  # its answer failed verification (trust/)


@dataclass(frozen=True)
class JobOutcome:
    """How one job ended, as routing saw it."""

    public_id: str
    kind: str  # models.kind_for(capabilities), or models.EMBEDDINGS
    size: float
    succeeded: bool
    started_at: datetime
    seconds: float
    failure: str = ""  # a Failure, or "" when the worker is not to blame
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    first_token_seconds: float | None = None
    already_loaded: bool = True


@dataclass(frozen=True)
class Recorded:
    proof_of_work: bool = False
    punished: bool = False


def record_outcome(*, worker_id: int, outcome: JobOutcome) -> Recorded:
    """Feed a finished job into its worker's stats, in one transaction (one
    commit instead of four, and nobody reads a half-recorded job)."""
    with transaction.atomic():
        if outcome.succeeded:
            return record_success(worker_id=worker_id, outcome=outcome)
        return record_failure(worker_id=worker_id, outcome=outcome)


def record_success(*, worker_id: int, outcome: JobOutcome) -> Recorded:
    """Count the job, update the EMAs, mark proof of work, punish if very slow."""
    now = timezone.now()
    alpha = settings.STATS_EMA_ALPHA
    proof = _count_success(worker_id=worker_id, outcome=outcome, now=now, alpha=alpha)
    measured = sample_of(outcome)
    if measured is not None:
        kind, bin, sample = measured
        record_sample(worker_id=worker_id, kind=kind, bin=bin, sample=sample, now=now)
        record_sample(worker_id=None, kind=kind, bin=bin, sample=sample, now=now)
    slow = measured is not None and is_very_slow(outcome, measured[2])
    if slow:
        punish(worker_id=worker_id, reason=Failure.SLOW, now=now)
    return Recorded(proof_of_work=bool(proof), punished=slow)


def _count_success(*, worker_id: int, outcome: JobOutcome, now: datetime, alpha: float) -> int:
    """Count the job; returns how many rows became its proof of work (0 or 1)."""
    update: dict[str, Any] = {
        "inferences": F("inferences") + 1,
        "updated_at": now,
        # A success lifts a punishment given before this job started. One given
        # while it ran (another socket of the same identity failed) stands.
        "punished_until": Case(
            When(punished_at__lt=outcome.started_at, then=Value(None)),
            default=F("punished_until"),
            output_field=DateTimeField(),
        ),
    }
    create: dict[str, Any] = {"inferences": 1, "updated_at": now}
    if outcome.stream and outcome.first_token_seconds is not None:
        ttft = outcome.first_token_seconds
        update["ttft_seconds"] = Case(
            When(ttft_seconds__isnull=True, then=Value(ttft)),
            default=_ema("ttft_seconds", ttft, alpha),
            output_field=FloatField(),
        )
        update["ttft_count"] = F("ttft_count") + 1
        create |= {"ttft_seconds": ttft, "ttft_count": 1}
    _upsert(WorkerStats, key={"worker_id": worker_id}, update=update, create=create)
    # Exactly one job wins this compare-and-set, however many run at once.
    return WorkerStats.objects.filter(worker_id=worker_id, proven_at__isnull=True).update(
        proven_at=now, proof_job=outcome.public_id
    )


def record_failure(*, worker_id: int, outcome: JobOutcome) -> Recorded:
    """Count a failed job and punish the worker when it is to blame."""
    now = timezone.now()
    update: dict[str, Any] = {"failures": F("failures") + 1, "updated_at": now}
    create: dict[str, Any] = {"failures": 1, "updated_at": now}
    if outcome.failure:
        update |= _punishment(outcome.failure, now)
        create |= _punishment(outcome.failure, now, existing=False)
    _upsert(WorkerStats, key={"worker_id": worker_id}, update=update, create=create)
    return Recorded(punished=bool(outcome.failure))


def punish(*, worker_id: int, reason: str, now: datetime | None = None) -> None:
    """Rank this worker last for a while. Works for a worker with no stats yet."""
    now = now or timezone.now()
    _upsert(
        WorkerStats,
        key={"worker_id": worker_id},
        update=_punishment(reason, now),
        create=_punishment(reason, now, existing=False),
    )


def forget_speed(*, worker_id: int, reason: str) -> None:
    """Refuted work must not count towards the routing: drop the worker's speed
    estimates (it is measured afresh, from the cluster's estimate) and punish it."""
    SizeBin.objects.filter(worker_id=worker_id).delete()
    punish(worker_id=worker_id, reason=reason)


def lift_punishment(*, worker_ids: list[int]) -> int:
    return WorkerStats.objects.filter(worker_id__in=worker_ids).update(punished_until=None, updated_at=timezone.now())


def record_sample(*, worker_id: int | None, kind: str, bin: int, sample: float, now: datetime) -> None:
    """One EMA step for a worker's bin (or the cluster's, `worker_id=None`)."""
    update = {"value": _ema("value", sample, settings.STATS_EMA_ALPHA), "count": F("count") + 1, "updated_at": now}
    _upsert(
        SizeBin,
        key={"worker_id": worker_id, "kind": kind, "bin": bin},
        update=update,
        create={"value": sample, "count": 1, "updated_at": now},
    )


def sample_of(outcome: JobOutcome) -> tuple[str, int, float] | None:
    """(kind, bin, value) of a successful job, or None when it measures nothing.

    Text: wall seconds from sending the job to its last frame, over weighted
    tokens. Images: seconds per image, under their own key. Embeddings are
    counted as inferences but not sampled: their cost per token is prompt
    evaluation only, and would flatter the worker's generation speed.
    """
    if outcome.seconds <= 0:
        return None
    if outcome.kind == Kind.IMAGE:
        if outcome.images <= 0:
            return None
        return Kind.IMAGE, ema.size_bin(outcome.size), outcome.seconds / outcome.images
    if outcome.kind != Kind.TEXT:
        return None
    tokens = ema.weighted_tokens(
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        prompt_weight=settings.STATS_PROMPT_TOKEN_WEIGHT,
        completion_weight=settings.STATS_COMPLETION_TOKEN_WEIGHT,
    )
    if tokens <= 0:  # the original divided by zero here (§21 item 13)
        return None
    return Kind.TEXT, ema.size_bin(outcome.size), outcome.seconds / tokens


def is_very_slow(outcome: JobOutcome, sample: float) -> bool:
    """A text job that ran long *and* slowly on a model that was already loaded.

    Both conditions: a long answer at a good pace is fine, and so is a slow
    start caused by loading the model.
    """
    return (
        outcome.kind == Kind.TEXT
        and outcome.already_loaded
        and outcome.seconds > settings.STATS_SLOW_JOB_SECONDS
        and sample > settings.STATS_SLOW_SECONDS_PER_TOKEN
    )


def _ema(field_name: str, sample: float, alpha: float) -> ExpressionWrapper:
    """`ema.update` as an SQL expression over the row's current value."""
    return ExpressionWrapper(F(field_name) * alpha + Value(sample * (1 - alpha)), output_field=FloatField())


def _punishment(reason: str, now: datetime, *, existing: bool = True) -> dict[str, Any]:
    seconds = settings.STATS_PUNISH_BUSY_SECONDS if reason == Failure.BUSY else settings.STATS_PUNISH_SECONDS
    until = now + timedelta(seconds=seconds)
    values: dict[str, Any] = {"punished_at": now, "punish_reason": str(reason), "punished_until": until}
    if existing:  # a short punishment ("busy") never shortens a longer one
        values["punished_until"] = Case(
            When(punished_until__gt=until, then=F("punished_until")), default=Value(until), output_field=DateTimeField()
        )
    return values


def _upsert(model, *, key: dict[str, Any], update: dict[str, Any], create: dict[str, Any]) -> None:
    """UPDATE the row at `key`, or INSERT it from `create` if there is none."""
    if model.objects.filter(**key).update(**update):
        return
    try:
        with transaction.atomic():
            model.objects.create(**key, **create)
    except IntegrityError:
        # Another process inserted it first (or the worker row is gone, when
        # the update below finds nothing and the sample is dropped).
        model.objects.filter(**key).update(**update)


# --- Import ---------------------------------------------------------------------------


class BadStatsFile(ValueError):
    """The file is not a stats export this version understands."""


@dataclass
class ImportReport:
    merged: int = 0
    skipped_already_imported: int = 0
    skipped_identities: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Record:
    identity: str  # "" for the cluster
    gpu_count: int
    inferences: int
    failures: int
    proven: bool
    ttft: tuple[float, int] | None
    bins: tuple[tuple[str, int, float, int], ...]  # (kind, bin, value, count)
    raw: Any  # what the digest is taken of

    @property
    def digest(self) -> str:
        text = json.dumps({"identity": self.identity, "record": self.raw}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def import_stats(*, data: Any, worker_for: Callable[[str, int], int], source: str = "") -> ImportReport:
    """Merge an export (ours or the original's) into the stats, all or nothing.

    Merging is count-weighted: a bin of value v from n samples and an imported
    one of value v' from n' become (v·n + v'·n') / (n + n') from n + n'. Each
    record (one identity, or the cluster) is remembered by the SHA-256 of its
    canonical JSON, and a record seen before is skipped, so importing the same
    file twice, or two files sharing records, counts nothing twice.
    `worker_for(identity, gpu_count)` names the worker id an identity's stats
    go to (the workers app creates the identity if need be).
    """
    records, skipped = parse_stats_file(data)
    report = ImportReport(skipped_identities=skipped)
    now = timezone.now()
    with transaction.atomic():
        for record in records:
            if ImportedRecord.objects.filter(digest=record.digest).exists():
                report.skipped_already_imported += 1
                continue
            _merge_record(record, now, worker_id=worker_for(record.identity, record.gpu_count) if record.identity else None)
            ImportedRecord.objects.create(
                digest=record.digest, identity=record.identity or "<cluster>", source=source[:300]
            )
            report.merged += 1
    return report


def _merge_record(record: _Record, now: datetime, *, worker_id: int | None) -> None:
    if worker_id is not None:
        stats, _ = WorkerStats.objects.select_for_update().get_or_create(
            worker_id=worker_id, defaults={"updated_at": now}
        )
        stats.inferences += record.inferences
        stats.failures += record.failures
        if record.ttft:
            stats.ttft_seconds, stats.ttft_count = ema.merge(stats.ttft_seconds, stats.ttft_count, *record.ttft)
        if record.proven and not stats.proven_at:
            stats.proven_at = now
        stats.updated_at = now
        stats.save()
    for kind, bin, value, count in record.bins:
        row = SizeBin.objects.select_for_update().filter(worker_id=worker_id, kind=kind, bin=bin).first()
        if row is None:
            SizeBin.objects.create(worker_id=worker_id, kind=kind, bin=bin, value=value, count=count, updated_at=now)
        else:
            row.value, row.count = ema.merge(row.value, row.count, value, count)
            row.updated_at = now
            row.save(update_fields=["value", "count", "updated_at"])


def parse_stats_file(data: Any) -> tuple[list[_Record], list[str]]:
    """Validate a whole file before anything is written. Returns (records, skipped identities)."""
    if not isinstance(data, dict):
        raise BadStatsFile("a stats file is a JSON object")
    if data.get("format") == EXPORT_FORMAT:
        return _parse_ours(data), []
    return _parse_original(data)


EXPORT_FORMAT = "queenbee-stats"
EXPORT_VERSION = 1
# An identity is a urlsafe-base64 x-only public key (32 bytes → 44 characters),
# optionally followed by ":slug". The original also keyed stats by worker ids and
# auth keys (secrets); those are not identities here and are skipped.
_PUBKEY_LENGTH = 44


def is_identity(value: str) -> bool:
    pubkey, sep, slug = value.partition(":")
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    return (
        len(pubkey) == _PUBKEY_LENGTH
        and pubkey.endswith("=")
        and set(pubkey[:-1]) <= alphabet
        and (not sep or 0 < len(slug) <= 64)
        and len(value) <= 200
    )


def _number(value: Any, what: str, *, positive: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value != value
        or value in (float("inf"), float("-inf"))
    ):
        raise BadStatsFile(f"{what} must be a number")
    if value < 0 or (positive and value == 0):
        raise BadStatsFile(f"{what} must be {'positive' if positive else 'at least 0'}")
    return float(value)


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadStatsFile(f"{what} must be a whole number, at least 0")
    return value


def _parse_ours(data: dict) -> list[_Record]:
    if data.get("version") != EXPORT_VERSION:
        raise BadStatsFile(
            f"unsupported {EXPORT_FORMAT} version {data.get('version')!r} (this Queenbee reads {EXPORT_VERSION})"
        )
    workers, cluster = data.get("workers"), data.get("cluster", [])
    if not isinstance(workers, list) or not isinstance(cluster, list):
        raise BadStatsFile("'workers' and 'cluster' must be lists")
    records = [_record_of_ours(entry, i) for i, entry in enumerate(workers)]
    seen: set[str] = set()
    for record in records:
        if record.identity in seen:
            raise BadStatsFile(f"identity {record.identity[:12]}… appears twice")
        seen.add(record.identity)
    if cluster:
        bins = _bins_of_ours(cluster, "cluster")
        records.append(_Record("", 0, 0, 0, False, None, bins, cluster))
    return records


def _record_of_ours(entry: Any, index: int) -> _Record:
    where = f"workers[{index}]"
    if not isinstance(entry, dict):
        raise BadStatsFile(f"{where} must be an object")
    identity = entry.get("identity")
    if not isinstance(identity, str) or not is_identity(identity):
        raise BadStatsFile(f"{where}.identity must be a worker identity (pubkey[:slug])")
    ttft = entry.get("ttft")
    if ttft is not None:
        if not isinstance(ttft, dict):
            raise BadStatsFile(f"{where}.ttft must be an object")
        ttft = (_number(ttft.get("value"), f"{where}.ttft.value"), _count(ttft.get("count"), f"{where}.ttft.count"))
        ttft = ttft if ttft[1] > 0 else None
    if not isinstance(entry.get("proven", False), bool):
        raise BadStatsFile(f"{where}.proven must be true or false")
    return _Record(
        identity=identity,
        gpu_count=_count(entry.get("gpu_count", 0), f"{where}.gpu_count"),
        inferences=_count(entry.get("inferences", 0), f"{where}.inferences"),
        failures=_count(entry.get("failures", 0), f"{where}.failures"),
        proven=entry.get("proven", False),
        ttft=ttft,
        bins=_bins_of_ours(entry.get("bins", []), f"{where}.bins"),
        raw=entry,
    )


def _bins_of_ours(bins: Any, where: str) -> tuple[tuple[str, int, float, int], ...]:
    if not isinstance(bins, list):
        raise BadStatsFile(f"{where} must be a list")
    parsed, seen = [], set()
    for i, item in enumerate(bins):
        if not isinstance(item, dict):
            raise BadStatsFile(f"{where}[{i}] must be an object")
        kind, bin = item.get("kind"), item.get("bin")
        if kind not in Kind.values:
            raise BadStatsFile(f"{where}[{i}].kind must be one of {', '.join(Kind.values)}")
        if isinstance(bin, bool) or not isinstance(bin, int) or not -1000 < bin < 1000:
            raise BadStatsFile(f"{where}[{i}].bin must be a small whole number")
        if (kind, bin) in seen:
            raise BadStatsFile(f"{where}[{i}] repeats {kind} bin {bin}")
        seen.add((kind, bin))
        count = _count(item.get("count"), f"{where}[{i}].count")
        if count:
            parsed.append((kind, bin, _number(item.get("value"), f"{where}[{i}].value", positive=True), count))
    return tuple(parsed)


def _parse_original(data: dict) -> tuple[list[_Record], list[str]]:
    """The original's table as JSON: {identity: {"dat": {"<bin>": value}, "cnt": n}}.

    The original keeps one count per identity, not per bin: each of its bins is
    merged with weight cnt / (number of bins), at least 1. Its bins (round(√size))
    are converted to ours through the size it stands for (bin²). `<all>` becomes
    the cluster's bins; keys that are not identities (the original also used worker
    ids and auth keys) are skipped and reported, never stored.
    """
    if not data:
        raise BadStatsFile("the file holds no stats")
    records, skipped = [], []
    for key, entry in data.items():
        where = f"entry {key[:12]!r}"
        if not isinstance(entry, dict) or not isinstance(entry.get("dat"), dict):
            raise BadStatsFile(
                f'{where} must look like {{"dat": {{bin: value}}, "cnt": n}} (or be a {EXPORT_FORMAT} export)'
            )
        cnt = _count(entry.get("cnt", 0), f"{where}.cnt")
        values: dict[int, list[float]] = {}
        for bin_text, value in entry["dat"].items():
            try:
                original = int(bin_text)
            except ValueError:
                raise BadStatsFile(f"{where}: bin {bin_text!r} is not a whole number") from None
            if not 0 <= original < 1000:
                raise BadStatsFile(f"{where}: bin {bin_text!r} is out of range")
            values.setdefault(ema.size_bin(ema.size_of_original_bin(original)), []).append(
                _number(value, f"{where}.dat[{bin_text}]", positive=True)
            )
        weight = max(1, cnt // max(1, len(entry["dat"])))
        bins = tuple((Kind.TEXT.value, bin, sum(vs) / len(vs), weight * len(vs)) for bin, vs in sorted(values.items()))
        if key == "<all>":
            records.append(_Record("", 0, 0, 0, False, None, bins, entry))
        elif is_identity(key):
            records.append(_Record(key, 0, cnt, 0, cnt > 0, None, bins, entry))
        else:
            skipped.append(key)
    return records, skipped
