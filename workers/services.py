"""Registering worker sockets, and what a job needs of one.

The live pool (pool.py, redis_pool.py) decides which connection a job gets;
this module keeps the durable side (the Worker and Connection rows) and the
one rule of whether a connection fits a need (`Need.fits`).
"""

import uuid
from dataclasses import dataclass, field, fields

from django.db import IntegrityError, transaction
from django.db.models import F

from api.hashing import hash_secret
from stats import selectors as stats_selectors
from stats import services as stats_services
from stats.models import kind_for

from .liveness import live_connections
from .models import GOOD_STANDING, Connection, ServerProcess, TrustState, Worker
from .protocol import ConnectInfo, version_key

# RAM a CPU-only worker needs per unit of model size (GB of weights plus context).
CPU_RAM_BYTES_PER_SIZE = 1.2e9
# The original's RAM requirement for GPU workers, 75 MB per unit: the weights live in VRAM.
GPU_RAM_BYTES_PER_SIZE = 7.5e7


class NoWorkerFits(Exception):
    """No connected worker could serve this job, even if it were free."""


class ProcessGone(Exception):
    """This process's registry row vanished; register the process again."""


@dataclass(frozen=True)
class Need:
    """What a job needs from a worker."""

    size: float
    model: str = ""
    capabilities: tuple[str, ...] = ("llama-infer",)
    worker_kind: str = "cli"  # cli | web | any
    min_version: str = ""
    pubkey: str = ""
    slug: str = ""
    user_id: str = ""
    exclude_workers: frozenset[int] = field(default_factory=frozenset)
    gpu_factor: float = 1.0  # fine-tuning needs several times the inference memory
    # A verification job's: not the checked worker's owner (hash of its auth key)
    # or address, and only identities in one of these trust states.
    exclude_owner: str = ""
    exclude_address: str = ""
    trust_states: tuple[str, ...] = ()
    # Tokens of context the job needs at least (routing/context.py: a lower bound
    # of its prompt plus its max_tokens); 0 = any context will do.
    context_tokens: int = 0

    @property
    def gpu_mib(self) -> float:
        return self.size * 1000 * self.gpu_factor

    @property
    def disk_mib(self) -> float:
        return self.size * 1500

    def as_dict(self) -> dict:
        """JSON-safe form, kept with a waiter in the Redis pool."""
        return {
            "size": self.size,
            "model": self.model,
            "capabilities": list(self.capabilities),
            "worker_kind": self.worker_kind,
            "min_version": self.min_version,
            "pubkey": self.pubkey,
            "slug": self.slug,
            "user_id": self.user_id,
            "exclude_workers": sorted(self.exclude_workers),
            "gpu_factor": self.gpu_factor,
            "exclude_owner": self.exclude_owner,
            "exclude_address": self.exclude_address,
            "trust_states": list(self.trust_states),
            "context_tokens": self.context_tokens,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Need":
        """The need of a waiter, whichever process enqueued it: keys this version
        does not know (a newer process's, during a rolling deploy) are ignored,
        and those it misses take their defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{
            **{k: v for k, v in data.items() if k in known},
            "capabilities": tuple(data["capabilities"]),
            "exclude_workers": frozenset(data["exclude_workers"]),
            "trust_states": tuple(data.get("trust_states", ())),
        })

    def fits(self, c: "ConnectionFacts", *, check_trust: bool = True) -> bool:
        """Whether one connection could serve this need: the only definition of the rule.

        The live pools filter with it, and so does the fine-tune scheduler
        (`fitting_connection_ids`). `check_trust=False` leaves out the trust
        state, which the pool reads fresh from the database (`fits_trust`): it
        changes while a worker is connected.
        """
        caps = c.capabilities_text
        if not all(f",{cap}," in caps for cap in self.capabilities):
            return False
        if self.min_version and (not c.version_key or c.version_key < (version_key(self.min_version) or "~")):
            return False
        if self.pubkey and self.pubkey not in (c.pubkey, c.identity):
            return False
        if self.slug and self.slug != c.slug:
            return False
        if self.user_id and c.owner_key_hash != hash_secret(f"uid:{self.user_id}"):
            return False
        if c.worker_id in self.exclude_workers:
            return False
        if check_trust and not self.fits_trust(c.trust_state):
            return False
        # A worker that announced its context window must hold the job's tokens;
        # one that said nothing (0: the original worker never says) is assumed
        # to, and refuses by itself if not ("exceed context window", which
        # routing retries elsewhere). A worker claiming more than it has only
        # earns itself jobs it then fails.
        if self.context_tokens and 0 < c.context_length < self.context_tokens:
            return False
        if self.exclude_owner and c.owner_key_hash == self.exclude_owner:
            return False
        if self.exclude_address and c.address == self.exclude_address:
            return False
        if self.worker_kind == "web":
            return c.is_web and c.ram_bytes > self.size * GPU_RAM_BYTES_PER_SIZE
        if self.worker_kind == "cli" and c.is_web:
            return False
        gpu_fit = c.gpu_memory_mib > self.gpu_mib / 1.2 and c.ram_bytes > self.size * GPU_RAM_BYTES_PER_SIZE
        cpu_fit = c.gpu_memory_mib == 0 and c.ram_bytes > self.size * CPU_RAM_BYTES_PER_SIZE
        web_fit = c.is_web and c.ram_bytes > self.size * GPU_RAM_BYTES_PER_SIZE
        disk_fit = c.disk_space_mib > self.disk_mib or c.is_web
        return (gpu_fit or cpu_fit or web_fit) and disk_fit

    def fits_trust(self, trust_state: str) -> bool:
        """A quarantined identity gets no jobs; a verification job names the states it takes."""
        if trust_state == TrustState.QUARANTINED:
            return False
        return not self.trust_states or trust_state in self.trust_states

    def describe(self) -> str:
        parts = [f"capabilities {', '.join(self.capabilities)}"]
        if self.size:
            parts.append(f"about {self.gpu_mib:.0f} MiB of GPU memory and {self.disk_mib:.0f} MiB of disk")
        if self.min_version:
            parts.append(f"worker version >= {self.min_version}")
        for key in ("pubkey", "slug", "user_id"):
            if getattr(self, key):
                parts.append(f"{key} as given in gpu_filter")
        if self.worker_kind == "web":
            parts.append("a browser worker")
        if self.context_tokens:
            parts.append(f"a context window of at least {self.context_tokens} tokens")
        return "; ".join(parts)


@dataclass(frozen=True)
class ConnectionFacts:
    """What `Need.fits` looks at, read in one query."""

    worker_id: int
    capabilities_text: str
    version_key: str
    is_web: bool
    gpu_memory_mib: float
    ram_bytes: int
    disk_space_mib: int
    pubkey: str
    identity: str
    slug: str
    owner_key_hash: str
    trust_state: str
    address: str
    context_length: int = 0  # the worker's context window in tokens; 0 = it did not say

    FIELDS = (
        "worker_id", "capabilities_text", "version_key", "is_web", "gpu_memory_mib", "ram_bytes",
        "disk_space_mib", "worker__pubkey", "worker__identity", "worker__slug", "worker__owner_key_hash",
        "worker__trust_state", "address", "context_length",
    )


@dataclass(frozen=True)
class Claim:
    connection_id: int
    channel_name: str
    worker_id: int
    is_web: bool
    already_loaded: bool
    # The worker's trust state as the claim read it (its standings): the recorder
    # plans the job's verification by it instead of reading it again. "" when unknown.
    trust_state: str = ""


def register_connection(*, process_id: int, channel_name: str, info: ConnectInfo, address: str = "") -> tuple[int, int]:
    """Store the worker and its live connection; returns (worker_id, connection_id)."""
    identity = info.identity or f"anon-{uuid.uuid4().hex}"
    defaults = {
        "pubkey": info.pubkey,
        "slug": info.slug,
        "ephemeral": not info.identity,
        "owner_key_hash": hash_secret(info.auth_key),
        "payout_address": info.ln_address,
        "worker_version": info.worker_version,
        "capabilities": list(info.capabilities),
        "cpu_count": info.cpu_count,
        "ram_bytes": info.ram_bytes,
        "disk_space_mib": info.disk_space_mib,
        "gpus": {
            "nv_gpu_count": info.nv_gpu_count,
            "nv_driver_version": info.nv_driver_version,
            "nv_gpus": [g.as_dict() for g in info.nv_gpus],
            "cl_driver_version": info.cl_driver_version,
            "cl_gpus": [g.as_dict() for g in info.cl_gpus],
            "web_gpus": [g.as_dict() for g in info.web_gpus],
        },
        "gpu_count": info.gpu_count,
        "advertised_models": list(info.models),
    }
    try:
        with transaction.atomic():
            # One INSERT … ON CONFLICT DO UPDATE (half the cost of update_or_create's
            # select, savepoint and insert); both backends return the row's pk.
            [worker] = Worker.objects.bulk_create(
                [Worker(identity=identity, **defaults)],
                update_conflicts=True, unique_fields=["identity"], update_fields=[*defaults, "last_seen"],
            )
            connection = Connection.objects.create(
                worker=worker,
                process_id=process_id,
                channel_name=channel_name,
                # Features are matched like capabilities ("verify" jobs need it).
                capabilities_text=Connection.capabilities_to_text((*info.capabilities, *info.features)),
                version_key=info.version_key,
                is_web=info.is_web,
                gpu_memory_mib=info.gpu_memory_mib,
                ram_bytes=info.ram_bytes,
                disk_space_mib=info.disk_space_mib,
                context_length=info.context_length,
                advertised_models=list(info.models),
                address=address[:64],
                current_model=info.models[0] if info.models else "",
            )
    except IntegrityError:
        if not ServerProcess.objects.filter(pk=process_id).exists():
            raise ProcessGone() from None
        raise
    return worker.pk, connection.pk


def facts_of(info: ConnectInfo, *, worker_id: int, address: str) -> ConnectionFacts:
    """A registered socket's facts as `Need.fits` reads them, from its connect
    message (the trust state is read fresh at each claim: `standings`)."""
    return ConnectionFacts(
        worker_id=worker_id,
        capabilities_text=Connection.capabilities_to_text((*info.capabilities, *info.features)),
        version_key=info.version_key,
        is_web=info.is_web,
        gpu_memory_mib=info.gpu_memory_mib,
        ram_bytes=info.ram_bytes,
        disk_space_mib=info.disk_space_mib,
        pubkey=info.pubkey,
        identity=info.identity,
        slug=info.slug,
        owner_key_hash=hash_secret(info.auth_key),
        trust_state="",
        address=address[:64],
        context_length=info.context_length,
    )


def unregister_connection(*, connection_id: int) -> tuple[str, str]:
    """Forget a closed socket. Returns the (job_id, reply_channel) it was claimed for, if any."""
    with transaction.atomic():
        row = (
            Connection.objects.filter(pk=connection_id)
            .values_list("job_id", "reply_channel", "worker_id", "worker__ephemeral")
            .first()
        )
        if row is None:
            return "", ""
        job_id, reply_channel, worker_id, ephemeral = row
        Connection.objects.filter(pk=connection_id).delete()
        if ephemeral:
            Worker.objects.filter(pk=worker_id, connections__isnull=True).delete()
    return job_id, reply_channel


def fitting_connection_ids(need: Need, *, among=None) -> list[int]:
    """The live connections (of `among`, a queryset of Connection rows) that fit `need`.

    The database only narrows the rows by capability; `Need.fits` decides. For
    the fine-tune scheduler, which looks at few rows: requests ask the live pool.
    """
    rows = live_connections() if among is None else among
    for capability in need.capabilities:
        rows = rows.filter(capabilities_text__contains=f",{capability},")
    return [pk for pk, *facts in rows.values_list("pk", *ConnectionFacts.FIELDS) if need.fits(ConnectionFacts(*facts))]


def live_connection_ids(*, ids: set[int]) -> set[int]:
    """Those of `ids` whose rows a live process holds: the durable record of a socket."""
    return set(live_connections().filter(pk__in=ids).values_list("pk", flat=True))


def count_frames(*, connection_id: int, worker_id: int, stray: int = 0, bad: int = 0) -> None:
    """Count frames dropped by the consumer. Garbage punishes the worker; a stray
    frame does not (it is usually the tail of a job its caller abandoned)."""
    Connection.objects.filter(pk=connection_id).update(
        stray_frames=F("stray_frames") + stray, bad_frames=F("bad_frames") + bad
    )
    if bad:
        stats_services.punish(worker_id=worker_id, reason=stats_services.Failure.GARBAGE)


@dataclass(frozen=True)
class Standing:
    """What the live pool reads fresh for a candidate at each claim: it changes
    while the worker stays connected (a verdict, a punishment, a first proof)."""

    trust_state: str
    punished: bool
    proven: bool  # ranked as proven: its proof of work done, and in good standing
    estimate: float | None  # seconds per token at the job's size (stats)


def standings(*, worker_ids: set[int], size: float, capabilities: tuple[str, ...]) -> dict[int, Standing]:
    """The standing of each worker that still exists, in three queries whatever
    their number: its trust state here, its punishment, proof and speed from stats."""
    if not worker_ids:
        return {}
    trust = dict(Worker.objects.filter(pk__in=worker_ids).values_list("pk", "trust_state"))
    measured = stats_selectors.standings(worker_ids=trust, size=size, kind=kind_for(capabilities))
    return {
        pk: Standing(
            trust_state=state,
            punished=measured[pk].punished,
            proven=measured[pk].proven and state in GOOD_STANDING,
            estimate=measured[pk].estimate,
        )
        for pk, state in trust.items()
    }
