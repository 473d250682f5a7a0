"""The live pool: which connections are free, busy or away, and who waits in line.

These facts change on every request, so they do not live in the database on
the embedded default: `MemoryPool` keeps them in this process's memory, where a
claim is a dictionary lookup on the event loop (one thread, so a claim and a
release can never interleave between checking a connection is free and taking
it). The embedded default is one process with the in-memory channel layer, so
no other process could reach these sockets anyway.

On the cluster (`REDIS_URL`) the pool is one pool for every process, in Redis
(redis_pool.py: one Lua script per claim).

Either way the Connection row stays the durable record of a socket (inserted
at connect, deleted at disconnect, swept with a dead process), and its `state`
column is what the admin, the stats pages and `/worker/stats` read. The pool
writes that column behind the claims (`StateMirror`: at most every
MIRROR_INTERVAL, what changed since, in one statement per state), never on a
request's path.

What a claim must read fresh (a worker's trust state, punishment, proof and
speed) is read in one database call per claim (`services.standings`), and by a
release only when somebody waits in line.
"""

import asyncio
import bisect
import contextlib
import dataclasses
import logging
import time
from dataclasses import asdict, dataclass, field

from django.conf import settings

from runtime.db import on_db_threads

from . import choice, services
from .models import Connection
from .services import Claim, ConnectionFacts, Need, NoWorkerFits

log = logging.getLogger(__name__)

FREE, BUSY, AWAY = Connection.State.FREE.value, Connection.State.BUSY.value, Connection.State.AWAY.value
# Free connections that fit, ranked per claim: enough to rank well, bounded so
# 10,000 idle workers do not make every claim walk all of them.
CANDIDATE_LIMIT = 64
# Waiters a freed connection looks at, oldest first. Beyond this many, a waiter
# with an unusual need is served by its own poll instead.
HANDOFF_SCAN = 50
# After a failed mirror write (database down), wait this long before the next.
MIRROR_RETRY_PAUSE = 1.0
# The rows' states are read by people (the admin, the pages, /worker/stats), who
# need no millisecond: they are written at most this often. A connection that
# went busy and free again in between is not written at all; at c=1 writing
# each change cost two UPDATEs and two thread hops per job, a tenth of its CPU.
MIRROR_INTERVAL = 0.25
# A claim that finds nothing fitting waits this long, at most, for the
# registrations under way (a worker whose row is written, but not yet in the pool).
REGISTRATION_WAIT = 2.0

_standings = on_db_threads(services.standings)


class PoolDown(Exception):
    """The live pool's store (Redis) could not be reached."""


@dataclass(eq=False)
class Live:
    """One connection of this process, as the pool sees it."""

    connection_id: int
    channel_name: str
    worker_id: int
    facts: ConnectionFacts
    current_model: str
    models: tuple[str, ...]
    state: str = FREE
    job_id: str = ""
    reply_channel: str = ""
    busy_since: float = 0.0


@dataclass(eq=False)
class Waiting:
    job_id: str
    reply_channel: str
    need: Need
    position: float
    deadline: float  # time.monotonic()
    key: tuple = field(default=())


class StateMirror:
    """Writes the pool's states to the Connection rows, off the request path.

    One writer at a time, every MIRROR_INTERVAL while anything changed: the latest
    state of each connection, in one UPDATE per state, skipping those whose row
    says it already.
    """

    def __init__(self) -> None:
        self.pending: dict[int, str] = {}
        self.written: dict[int, str] = {}  # rows that do not say free (a new row does)
        self._task: asyncio.Task | None = None

    def mark(self, connection_id: int, state: str) -> None:
        self.pending[connection_id] = state
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._write())

    def forget(self, connection_id: int) -> None:
        """The connection's row is gone."""
        self.pending.pop(connection_id, None)
        self.written.pop(connection_id, None)

    async def _write(self) -> None:
        while self.pending:
            await asyncio.sleep(MIRROR_INTERVAL)
            batch = {c: s for c, s in self.pending.items() if s != self.written.get(c, FREE)}
            self.pending = {}
            if not batch:
                continue
            try:
                await _write_states(batch)
            except Exception:
                log.warning("could not write connection states; retrying", exc_info=True)
                self.pending = {**batch, **self.pending}
                await asyncio.sleep(MIRROR_RETRY_PAUSE)
                continue
            for connection_id, state in batch.items():
                if state == FREE:
                    self.written.pop(connection_id, None)
                else:
                    self.written[connection_id] = state

    async def drained(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)


def write_states(batch: dict[int, str]) -> None:
    by_state: dict[str, list[int]] = {}
    for connection_id, state in batch.items():
        by_state.setdefault(state, []).append(connection_id)
    for state, ids in by_state.items():
        Connection.objects.filter(pk__in=ids).update(state=state)


_write_states = on_db_threads(write_states)


class MemoryPool:
    """The live pool of one process, in its memory (the embedded default)."""

    def __init__(self) -> None:
        self.live: dict[int, Live] = {}
        # Free connections in the order they became free: a claim walks these only.
        self.free: dict[int, Live] = {}
        self.waiting: dict[str, Waiting] = {}
        self._line: list[tuple[float, str]] = []  # (position, job_id), oldest first
        self._registering: set[asyncio.Future] = set()
        self.mirror = StateMirror()

    # --- connections -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def adding(self):
        """Around a registration: its row is visible (to a caller who waited for
        it) before it joins the pool, and a claim that finds nothing waits for it."""
        done = asyncio.get_running_loop().create_future()
        self._registering.add(done)
        try:
            yield
        finally:
            self._registering.discard(done)
            done.set_result(None)

    async def add(self, *, connection_id: int, channel_name: str, worker_id: int, facts: ConnectionFacts, current_model: str, models: tuple[str, ...]) -> None:
        entry = Live(connection_id, channel_name, worker_id, facts, current_model, models)
        self.live[connection_id] = entry
        self.free[connection_id] = entry

    async def remove(self, *, connection_id: int) -> tuple[str, str]:
        """Forget a closed socket: its row, and the (job_id, reply_channel) it was claimed for."""
        entry = self.live.pop(connection_id, None)
        self.free.pop(connection_id, None)
        self.mirror.forget(connection_id)
        await _unregister(connection_id=connection_id)
        if entry is None or entry.state != BUSY:
            return "", ""
        return entry.job_id, entry.reply_channel

    async def set_away(self, *, connection_id: int, away: bool) -> None:
        entry = self.live.get(connection_id)
        if entry is None or entry.job_id:
            return
        if away and entry.state == FREE:
            self._set(entry, AWAY)
        elif not away and entry.state == AWAY:
            self._set(entry, FREE)

    def _set(self, entry: Live, state: str) -> None:
        changed, entry.state = entry.state != state, state
        if state == FREE:
            entry.job_id = entry.reply_channel = ""
            self.free[entry.connection_id] = entry
        else:
            self.free.pop(entry.connection_id, None)
        if changed:  # a new connection's row says free already
            self.mirror.mark(entry.connection_id, state)

    def _take(self, entry: Live, *, job_id: str, reply_channel: str, model: str, trust_state: str) -> Claim:
        claim = Claim(entry.connection_id, entry.channel_name, entry.worker_id, entry.facts.is_web, entry.current_model == model, trust_state)
        entry.job_id, entry.reply_channel, entry.busy_since = job_id, reply_channel, time.monotonic()
        entry.current_model = model or entry.current_model
        self._set(entry, BUSY)
        return claim

    # --- claims ------------------------------------------------------------------------

    async def claim(self, *, need: Need, job_id: str, reply_channel: str) -> Claim | None:
        """Claim the best free connection for `need`.

        Returns None when fitting connections exist but all are busy (wait and try
        again); raises NoWorkerFits when none could ever serve it.
        """
        free = self._fitting(self.free.values(), need)
        if not free:
            return await self._none_free(need)
        standing = await _standings(worker_ids={e.worker_id for e in free}, size=need.size, capabilities=need.capabilities)
        free = [e for e in free if e.worker_id in standing and need.fits_trust(standing[e.worker_id].trust_state)]
        if not free:
            return await self._none_free(need)
        candidates = [
            choice.Candidate(
                e.connection_id, e.channel_name, e.worker_id, e.facts.is_web, e.facts.gpu_memory_mib, e.current_model,
                () if e.current_model == need.model else e.models,
                estimate=standing[e.worker_id].estimate, punished=standing[e.worker_id].punished, proven=standing[e.worker_id].proven,
            )
            for e in free
        ]
        if all(c.punished for c in candidates) and await self._healthy_one_is_busy(need):
            # Only punished workers are free, but a worker in good standing fits and
            # is busy: wait in line for it. A punished worker is chosen only when
            # nothing else fits.
            return None
        ranked = choice.rank(candidates, gpu_needed_mib=need.gpu_mib, model=need.model, unproven_share=settings.STATS_UNPROVEN_SHARE)
        for c in ranked:
            # Another claim may have taken it while the standings were read.
            entry = self.live.get(c.connection_id)
            if entry is not None and entry.state == FREE:
                return self._take(entry, job_id=job_id, reply_channel=reply_channel, model=need.model, trust_state=standing[entry.worker_id].trust_state)
        return None

    @staticmethod
    def _fitting(entries, need: Need, limit: int = CANDIDATE_LIMIT) -> list[Live]:
        found = []
        for entry in entries:
            if need.fits(entry.facts, check_trust=False):
                found.append(entry)
                if len(found) >= limit:
                    break
        return found

    async def _none_free(self, need: Need) -> None:
        """None if a fitting connection is busy (wait), else NoWorkerFits."""
        if self._registering and not self._fitting(self.live.values(), need, limit=1):
            await asyncio.wait(list(self._registering), timeout=REGISTRATION_WAIT)
        if await self.fits_any(need=need):
            return None
        raise NoWorkerFits(f"No connected worker can serve this request: it needs {need.describe()}.")

    async def fits_any(self, *, need: Need) -> bool:
        """Whether a connection of the pool could serve `need`, free or not."""
        fitting = self._fitting(self.live.values(), need)
        if not fitting:
            return False
        standing = await _standings(worker_ids={e.worker_id for e in fitting}, size=0, capabilities=need.capabilities)
        return any(need.fits_trust(s.trust_state) for s in standing.values())

    async def largest_context(self, *, need: Need) -> int | None:
        """The largest context window announced by a connection that could serve
        `need` whatever its context, free or not; None when none announced one."""
        loose = dataclasses.replace(need, context_tokens=0)
        return await largest_announced_context([e for e in self.live.values() if e.facts.context_length and loose.fits(e.facts, check_trust=False)], loose)

    async def _healthy_one_is_busy(self, need: Need) -> bool:
        busy = self._fitting((e for e in self.live.values() if e.state != FREE), need)
        standing = await _standings(worker_ids={e.worker_id for e in busy}, size=0, capabilities=need.capabilities)
        return any(not s.punished and need.fits_trust(s.trust_state) for s in standing.values())

    async def release_or_hand_off(self, *, connection_id: int, job_id: str) -> tuple[str, dict] | None:
        """After a job's last frame: give the connection to the oldest waiter it fits,
        or mark it free. Returns (reply_channel, claim message fields) on a hand-off."""
        entry = self.live.get(connection_id)
        if entry is None or entry.job_id != job_id:
            return None
        waiters = self._waiters_for(entry)
        if waiters:
            standing = (await _standings(worker_ids={entry.worker_id}, size=0, capabilities=())).get(entry.worker_id)
            if self.live.get(connection_id) is not entry or entry.job_id != job_id:
                return None  # the socket closed meanwhile
            # A punished worker is not handed to anyone: it goes back to the pool,
            # where the ranked claim takes it only when nothing else fits.
            if standing is not None and not standing.punished:
                for waiter in waiters:
                    if waiter.job_id in self.waiting and waiter.need.fits_trust(standing.trust_state):
                        self._unqueue(waiter.job_id)
                        claim = self._take(
                            entry, job_id=waiter.job_id, reply_channel=waiter.reply_channel, model=waiter.need.model, trust_state=standing.trust_state,
                        )
                        return waiter.reply_channel, {"job_id": waiter.job_id, "claim": asdict(claim)}
        if entry.state != AWAY:
            self._set(entry, FREE)
        return None

    # --- the waiting line --------------------------------------------------------------

    async def enqueue(self, *, job_id: str, reply_channel: str, need: Need, position: float, deadline_seconds: float) -> None:
        self._unqueue(job_id)
        key = (position, job_id)
        self.waiting[job_id] = Waiting(job_id, reply_channel, need, position, time.monotonic() + deadline_seconds, key)
        bisect.insort(self._line, key)

    async def leave(self, *, job_id: str) -> bool:
        """Leave the line. False means a connection is already on its way to us."""
        return self._unqueue(job_id)

    def _unqueue(self, job_id: str) -> bool:
        waiter = self.waiting.pop(job_id, None)
        if waiter is None:
            return False
        index = bisect.bisect_left(self._line, waiter.key)
        if index < len(self._line) and self._line[index] == waiter.key:
            del self._line[index]
        return True

    def _waiters_for(self, entry: Live) -> list[Waiting]:
        now, found, expired = time.monotonic(), [], []
        for _, job_id in self._line[:HANDOFF_SCAN]:
            waiter = self.waiting[job_id]
            if waiter.deadline < now:
                expired.append(job_id)  # its request is gone without leaving
            elif waiter.need.fits(entry.facts, check_trust=False):
                found.append(waiter)
        for job_id in expired:
            self._unqueue(job_id)
        return found

    def line_length(self) -> int:
        """Sync, for the selectors' threads: a copy of the line is read at once."""
        now = time.monotonic()
        return sum(1 for w in list(self.waiting.values()) if w.deadline > now)

    # --- liveness ----------------------------------------------------------------------

    async def stale_claims(self, *, process_id: int) -> list[tuple[str, str]]:
        cutoff = time.monotonic() - settings.STALE_CLAIM_SECONDS
        return [(e.channel_name, e.job_id) for e in self.live.values() if e.state == BUSY and e.busy_since < cutoff]

    async def forget_dead_channels(self, *, process_id: int, live: frozenset[str]) -> None:
        for entry in [e for e in self.live.values() if e.channel_name not in live]:
            self.live.pop(entry.connection_id, None)
            self.free.pop(entry.connection_id, None)

    async def drained(self) -> None:
        await self.mirror.drained()

    async def beat(self, *, process_id: int) -> None:
        pass  # this process's connections live as long as it does

    def note_job(self, *, connection_id: int) -> None:
        pass  # the claim wrote it


async def largest_announced_context(entries: list[Live], need: Need) -> int | None:
    """The largest context window of `entries` whose trust state `need` takes.

    Only on the way to a refusal (the request is too long for every worker),
    so the entries may be many: the standings are read for the largest
    CANDIDATE_LIMIT of them only.
    """
    largest = sorted(entries, key=lambda e: e.facts.context_length, reverse=True)[:CANDIDATE_LIMIT]
    if not largest:
        return None
    standing = await _standings(worker_ids={e.worker_id for e in largest}, size=0, capabilities=need.capabilities)
    sizes = [e.facts.context_length for e in largest if e.worker_id in standing and need.fits_trust(standing[e.worker_id].trust_state)]
    return max(sizes, default=None)


_unregister = on_db_threads(services.unregister_connection)
