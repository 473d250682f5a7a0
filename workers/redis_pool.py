"""The cluster's live pool, in Redis: one pool for every process.

Keys (under settings.LIVE_POOL_PREFIX):
  facts      hash  connection id → its facts (JSON), what `Need.fits` reads
  version    int   bumped whenever `facts` changes: each process keeps a parsed
                   copy of `facts` and reads it again only when this moved
  holder     hash  connection id → the process id holding its socket
  state      hash  connection id → "free", "away" or "busy|<job>|<reply>|<since>"
  proc:<id>  str   a process's heartbeat, expiring after PROCESS_GRACE: the
                   connections of a process that died are never claimed again
  line       zset  waiting job ids by arrival (the waiting line, FIFO across processes)
  waiters    hash  job id → its need, reply channel and deadline (JSON)
  registering zset registrations under way (their row written, not yet in
                   `facts`), by when they are given up: a claim that finds
                   nothing fitting waits for them

A claim is one Lua script: given the candidates in ranked order, it takes the
first that is free and whose holder is alive, so no two requests anywhere get
one connection. A release is one script too: it hands the connection to the
first of the given waiters still in line, or marks it free. Which candidates and
waiters fit is decided in Python beforehand (Need.fits on the cached facts):
the script only decides who wins.
"""

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid

import redis
import redis.asyncio as aredis
from django.conf import settings

from runtime.db import on_db_threads
from runtime.process import process

from . import choice, services
from .liveness import registry
from .pool import (
    CANDIDATE_LIMIT, HANDOFF_SCAN, REGISTRATION_WAIT, Live, PoolDown, StateMirror, _standings, _unregister, largest_announced_context,
)
from .services import Claim, ConnectionFacts, Need, NoWorkerFits

log = logging.getLogger(__name__)

_live_rows = on_db_threads(services.live_connection_ids)

# While registrations are under way, a claim that found nothing looks again this often.
REGISTRATION_POLL = 0.02

_CLAIM = """
local prefix, now, job, reply = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local alive = 0
for i = 5, #ARGV do
  local cid = ARGV[i]
  local state = redis.call('HGET', KEYS[1], cid)
  local holder = redis.call('HGET', KEYS[2], cid)
  if state and holder and redis.call('EXISTS', prefix .. 'proc:' .. holder) == 1 then
    if state == 'free' then
      redis.call('HSET', KEYS[1], cid, 'busy|' .. job .. '|' .. reply .. '|' .. now)
      return tonumber(cid)
    end
    alive = 1
  end
end
return alive - 1
"""
# The claim script's answers besides a connection id.
ALL_BUSY, NONE_ALIVE = 0, -1

_RELEASE = """
local cid, job, now, only_if_nobody_waits = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local state = redis.call('HGET', KEYS[1], cid)
if not state then return false end
if only_if_nobody_waits and redis.call('ZCARD', KEYS[2]) > 0 then return 'line' end
if job == '' then
  if state ~= 'free' then return false end
elseif string.sub(state, 1, 6 + #job) ~= 'busy|' .. job .. '|' then
  return false
end
for i = 5, #ARGV, 2 do
  local waiter = ARGV[i]
  if redis.call('ZREM', KEYS[2], waiter) == 1 then
    redis.call('HDEL', KEYS[3], waiter)
    redis.call('HSET', KEYS[1], cid, 'busy|' .. waiter .. '|' .. ARGV[i + 1] .. '|' .. now)
    return waiter
  end
end
redis.call('HSET', KEYS[1], cid, 'free')
return 'free'
"""

_LEAVE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

_AWAY = """
local from, to = ARGV[2], ARGV[3]
if redis.call('HGET', KEYS[1], ARGV[1]) == from then redis.call('HSET', KEYS[1], ARGV[1], to) end
return 0
"""

_REMOVE = """
local state = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[4])
return state
"""


def _facts_json(entry: Live) -> str:
    f = entry.facts
    return json.dumps([
        entry.channel_name, entry.worker_id, entry.current_model, list(entry.models),
        f.capabilities_text, f.version_key, f.is_web, f.gpu_memory_mib, f.ram_bytes, f.disk_space_mib,
        f.pubkey, f.identity, f.slug, f.owner_key_hash, f.address, f.context_length,
    ])


def _entry(connection_id: int, text: bytes) -> Live:
    # Facts an older process published (during a rolling deploy) end before the
    # context length: that worker is taken to have said nothing.
    (channel, worker_id, model, models, caps, version, is_web, gpu, ram, disk, pubkey, identity, slug, owner, address, *later) = json.loads(text)
    context_length = later[0] if later else 0
    facts = ConnectionFacts(worker_id, caps, version, is_web, gpu, ram, disk, pubkey, identity, slug, owner, "", address, context_length)
    return Live(connection_id, channel, worker_id, facts, model, tuple(models))


class RedisPool:
    """The live pool of a cluster of processes, in Redis (see the module's docstring)."""

    def __init__(self) -> None:
        self.prefix = settings.LIVE_POOL_PREFIX
        self.keys = {k: self.prefix + k for k in ("facts", "version", "holder", "state", "line", "waiters", "registering")}
        self._client: aredis.Redis | None = None
        self._sync: redis.Redis | None = None
        self._loop = None
        self._scripts: dict = {}
        self.version = b""
        self.entries: dict[int, Live] = {}
        self.own: dict[int, Live] = {}  # this process's connections
        self.mirror = StateMirror()

    def client(self) -> aredis.Redis:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = aredis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
            self._loop = loop
            self._scripts = {
                name: self._client.register_script(source)
                for name, source in (("claim", _CLAIM), ("release", _RELEASE), ("leave", _LEAVE), ("away", _AWAY), ("remove", _REMOVE))
            }
        return self._client

    def script(self, name: str):
        self.client()
        return self._scripts[name]

    # --- connections -------------------------------------------------------------------

    async def beat(self, *, process_id: int) -> None:
        """This process's heartbeat in Redis; gone when it stops offering its workers."""
        key = f"{self.prefix}proc:{process_id}"
        if process.stopping:
            await self.client().delete(key)
            return
        existed = await self.client().set(key, 1, px=int(settings.PROCESS_GRACE * 1000), get=True)
        if existed is None and self.own:
            # Redis restarted empty (or we stalled past the grace): publish our
            # connections again. One busy with a job may be claimed meanwhile; its
            # consumer refuses a second job ("connection not ready"), so the
            # request is retried on another worker.
            log.warning("the live pool lost this process's connections; publishing them again")
            for entry in list(self.own.values()):
                await self._publish(entry)
            self.version = b""
        await self._sweep_dead_holders()

    async def _sweep_dead_holders(self) -> None:
        holders = await self.client().hgetall(self.keys["holder"])
        alive: dict[bytes, bool] = {}
        for cid, pid in holders.items():
            if pid not in alive:
                alive[pid] = bool(await self.client().exists(self.prefix.encode() + b"proc:" + pid))
            if not alive[pid]:
                await self.script("remove")(keys=[self.keys["state"], self.keys["facts"], self.keys["holder"], self.keys["version"]], args=[cid])

    @contextlib.asynccontextmanager
    async def adding(self):
        """Around a registration: a claim anywhere that finds nothing fitting waits
        for it (its row is visible before it joins the pool)."""
        token = uuid.uuid4().hex
        try:
            await self.client().zadd(self.keys["registering"], {token: time.time() + REGISTRATION_WAIT})
        except redis.RedisError:  # the publish that follows fails too, and says so
            log.warning("could not announce a registration to the live pool", exc_info=True)
        try:
            yield
        finally:
            try:
                await self.client().zrem(self.keys["registering"], token)
            except redis.RedisError:  # it expires
                log.warning("could not end a registration in the live pool", exc_info=True)

    async def add(self, *, connection_id: int, channel_name: str, worker_id: int, facts: ConnectionFacts, current_model: str, models: tuple[str, ...]) -> None:
        entry = Live(connection_id, channel_name, worker_id, facts, current_model, models)
        self.own[connection_id] = entry
        self.entries[connection_id] = entry
        await self._publish(entry)

    async def _publish(self, entry: Live) -> None:
        connection_id = entry.connection_id
        async with self.client().pipeline(transaction=True) as pipe:
            pipe.set(f"{self.prefix}proc:{registry.process_id}", 1, px=int(settings.PROCESS_GRACE * 1000))
            pipe.hset(self.keys["facts"], connection_id, _facts_json(entry))
            pipe.hset(self.keys["holder"], connection_id, registry.process_id)
            pipe.hset(self.keys["state"], connection_id, "free")
            pipe.incr(self.keys["version"])
            await pipe.execute()

    async def remove(self, *, connection_id: int) -> tuple[str, str]:
        self.own.pop(connection_id, None)
        state = None
        try:
            state = await self.script("remove")(
                keys=[self.keys["state"], self.keys["facts"], self.keys["holder"], self.keys["version"]], args=[connection_id]
            )
        except redis.RedisError:
            log.warning("could not remove a connection from the live pool (its holder's heartbeat will)", exc_info=True)
        self.mirror.forget(connection_id)
        row_job, row_reply = await _unregister(connection_id=connection_id)
        if state and state.startswith(b"busy|"):
            _, job_id, reply, _ = state.decode().split("|", 3)
            return job_id, reply
        return row_job, row_reply

    async def set_away(self, *, connection_id: int, away: bool) -> None:
        frm, to = ("free", "away") if away else ("away", "free")
        await self.script("away")(keys=[self.keys["state"]], args=[connection_id, frm, to])
        self.mirror.mark(connection_id, to)

    def note_job(self, *, connection_id: int) -> None:
        """The holder got the job a claim sent: its row says busy (the holder writes
        every state of its rows, so they are written in order)."""
        self.mirror.mark(connection_id, services.Connection.State.BUSY.value)

    async def _refresh(self) -> None:
        client = self.client()
        version = await client.get(self.keys["version"]) or b""
        if version != self.version:
            facts = await client.hgetall(self.keys["facts"])
            self.entries = {int(cid): _entry(int(cid), text) for cid, text in facts.items()}
            self.version = version

    # --- claims ------------------------------------------------------------------------

    async def claim(self, *, need: Need, job_id: str, reply_channel: str) -> Claim | None:
        try:
            return await self._claim(need=need, job_id=job_id, reply_channel=reply_channel)
        except redis.RedisError as exc:
            raise PoolDown(f"the live pool (Redis) is unreachable: {exc}") from exc

    async def _claim(self, *, need: Need, job_id: str, reply_channel: str) -> Claim | None:
        await self._refresh()
        fitting = [e for e in self.entries.values() if need.fits(e.facts, check_trust=False)]
        if not fitting:
            return await self._nothing_cached(need)
        # Ranked in batches: the first batch nearly always holds a free one.
        for start in range(0, len(fitting), CANDIDATE_LIMIT):
            batch = fitting[start:start + CANDIDATE_LIMIT]
            standing = await _standings(worker_ids={e.worker_id for e in batch}, size=need.size, capabilities=need.capabilities)
            batch = [e for e in batch if e.worker_id in standing and need.fits_trust(standing[e.worker_id].trust_state)]
            if not batch:
                continue
            candidates = [
                choice.Candidate(
                    e.connection_id, e.channel_name, e.worker_id, e.facts.is_web, e.facts.gpu_memory_mib, e.current_model,
                    () if e.current_model == need.model else e.models,
                    estimate=standing[e.worker_id].estimate, punished=standing[e.worker_id].punished, proven=standing[e.worker_id].proven,
                )
                for e in batch
            ]
            ranked = choice.rank(candidates, gpu_needed_mib=need.gpu_mib, model=need.model, unproven_share=settings.STATS_UNPROVEN_SHARE)
            # Punished workers only when nobody else is there, free or busy.
            healthy = [c for c in ranked if not c.punished]
            order = healthy if healthy else ranked
            won = await self.script("claim")(
                keys=[self.keys["state"], self.keys["holder"]],
                args=[self.prefix, int(time.time() * 1000), job_id, reply_channel, *(c.connection_id for c in order)],
            )
            if won > 0:
                entry = self.entries[won]
                claim = Claim(
                    entry.connection_id, entry.channel_name, entry.worker_id, entry.facts.is_web, entry.current_model == need.model,
                    standing[entry.worker_id].trust_state,
                )
                entry.current_model = need.model or entry.current_model
                return claim
            if won == ALL_BUSY:
                return None
            # NONE_ALIVE: this batch's holders are dead (not swept yet); try the next.
        return await self._nothing_cached(need)

    async def _nothing_cached(self, need: Need) -> None:
        """Nothing alive in the pool fits. A worker whose row is written may be
        joining the pool right now (`adding`): once the registrations under way
        are done, wait in line if one of them fits (it hands itself over)."""
        known = set(self.entries)
        if await self._waited_for_registrations():
            await self._refresh()
            if any(need.fits(e.facts, check_trust=False) for cid, e in self.entries.items() if cid not in known):
                return None
        raise NoWorkerFits(f"No connected worker can serve this request: it needs {need.describe()}.")

    async def _waited_for_registrations(self) -> bool:
        """Wait up to REGISTRATION_WAIT for the registrations under way; False if there were none."""
        key = self.keys["registering"]
        deadline = time.monotonic() + REGISTRATION_WAIT
        waited = False
        while True:
            async with self.client().pipeline(transaction=False) as pipe:
                pipe.zremrangebyscore(key, "-inf", time.time())
                pipe.zcard(key)
                _, under_way = await pipe.execute()
            if not under_way or time.monotonic() >= deadline:
                return waited
            waited = True
            await asyncio.sleep(REGISTRATION_POLL)

    async def fits_any(self, *, need: Need) -> bool:
        """Whether a connection of a live process could serve `need`, free or not."""
        try:
            await self._refresh()
            fitting = await self._held_alive([e for e in self.entries.values() if need.fits(e.facts, check_trust=False)])
        except redis.RedisError as exc:
            raise PoolDown(f"the live pool (Redis) is unreachable: {exc}") from exc
        # Only connections whose durable row a live process still holds: an
        # entry can outlive its socket in Redis (its holder's cleanup failed).
        rows = await _live_rows(ids={e.connection_id for e in fitting[:CANDIDATE_LIMIT]})
        fitting = [e for e in fitting[:CANDIDATE_LIMIT] if e.connection_id in rows]
        if not fitting:
            return False
        standing = await _standings(worker_ids={e.worker_id for e in fitting}, size=0, capabilities=need.capabilities)
        return any(need.fits_trust(s.trust_state) for s in standing.values())

    async def largest_context(self, *, need: Need) -> int | None:
        """The largest context window announced by a connection of a live process
        that could serve `need` whatever its context; None when none announced one."""
        loose = dataclasses.replace(need, context_tokens=0)
        try:
            await self._refresh()
            fitting = await self._held_alive([e for e in self.entries.values() if e.facts.context_length and loose.fits(e.facts, check_trust=False)])
        except redis.RedisError as exc:
            raise PoolDown(f"the live pool (Redis) is unreachable: {exc}") from exc
        return await largest_announced_context(fitting, loose)

    async def _held_alive(self, entries: list[Live]) -> list[Live]:
        """The entries whose holding process is alive: a dead one's stay until a
        live process's beat sweeps them (the claim script skips them too)."""
        if not entries:
            return []
        client = self.client()
        holders = await client.hmget(self.keys["holder"], [e.connection_id for e in entries])
        processes = sorted({h for h in holders if h is not None})
        async with client.pipeline(transaction=False) as pipe:
            for process in processes:
                pipe.exists(self.prefix.encode() + b"proc:" + process)
            alive = dict(zip(processes, await pipe.execute()))
        return [e for e, holder in zip(entries, holders) if holder is not None and alive[holder]]

    async def release_or_hand_off(self, *, connection_id: int, job_id: str) -> tuple[str, dict] | None:
        try:
            return await self._release(connection_id=connection_id, job_id=job_id)
        except redis.RedisError as exc:
            raise PoolDown(f"the live pool (Redis) is unreachable: {exc}") from exc

    async def _release(self, *, connection_id: int, job_id: str) -> tuple[str, dict] | None:
        client = self.client()
        keys = [self.keys["state"], self.keys["line"], self.keys["waiters"]]
        # First as if nobody waited (one round trip): the script answers 'line' if somebody does.
        won = await self.script("release")(keys=keys, args=[connection_id, job_id, int(time.time() * 1000), 1])
        if won != b"line":
            if won == b"free" and job_id:  # a new connection's row says free already
                self.mirror.mark(connection_id, services.Connection.State.FREE.value)
            return None
        waiters: list[tuple[str, str, Need]] = []
        jobs = await client.zrange(self.keys["line"], 0, HANDOFF_SCAN - 1)
        entry = self.entries.get(connection_id)
        if jobs and entry is None:
            await self._refresh()
            entry = self.entries.get(connection_id)
        if jobs and entry is not None:
            now = time.time()
            for waiting_job, text in zip(jobs, await client.hmget(self.keys["waiters"], jobs)):
                if text is None:
                    continue
                need_dict, reply, deadline = json.loads(text)
                need = Need.from_dict(need_dict)
                if deadline > now and need.fits(entry.facts, check_trust=False):
                    waiters.append((waiting_job.decode(), reply, need))
        if waiters:
            standing = (await _standings(worker_ids={entry.worker_id}, size=0, capabilities=())).get(entry.worker_id)
            if standing is None or standing.punished:
                waiters = []
            else:
                waiters = [w for w in waiters if w[2].fits_trust(standing.trust_state)]
        args = [connection_id, job_id, int(time.time() * 1000), 0]
        for waiting_job, reply, _ in waiters:
            args += [waiting_job, reply]
        won = await self.script("release")(keys=keys, args=args)
        if won in (None, False, b"free"):
            if won == b"free" and job_id:
                self.mirror.mark(connection_id, services.Connection.State.FREE.value)
            return None
        self.mirror.mark(connection_id, services.Connection.State.BUSY.value)
        won = won.decode()
        waiting_job, reply, need = next(w for w in waiters if w[0] == won)
        claim = Claim(connection_id, entry.channel_name, entry.worker_id, entry.facts.is_web, entry.current_model == need.model, standing.trust_state)
        entry.current_model = need.model or entry.current_model
        return reply, {"job_id": waiting_job, "claim": claim.__dict__}

    # --- the waiting line --------------------------------------------------------------

    async def enqueue(self, *, job_id: str, reply_channel: str, need: Need, position: float, deadline_seconds: float) -> None:
        try:
            async with self.client().pipeline(transaction=True) as pipe:
                pipe.hset(self.keys["waiters"], job_id, json.dumps([need.as_dict(), reply_channel, time.time() + deadline_seconds]))
                pipe.zadd(self.keys["line"], {job_id: position})
                await pipe.execute()
        except redis.RedisError as exc:
            raise PoolDown(f"the live pool (Redis) is unreachable: {exc}") from exc

    async def leave(self, *, job_id: str) -> bool:
        try:
            return bool(await self.script("leave")(keys=[self.keys["line"], self.keys["waiters"]], args=[job_id]))
        except redis.RedisError as exc:
            raise PoolDown(f"the live pool (Redis) is unreachable: {exc}") from exc

    def line_length(self) -> int:
        """Sync, for the selectors' threads."""
        if self._sync is None:
            self._sync = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
        now = time.time()
        try:
            texts = self._sync.hvals(self.keys["waiters"])
        except redis.RedisError:  # /worker/stats and /metrics still answer during an outage
            log.warning("could not read the waiting line's length", exc_info=True)
            return 0
        return sum(1 for text in texts if json.loads(text)[2] > now)

    # --- liveness ----------------------------------------------------------------------

    async def stale_claims(self, *, process_id: int) -> list[tuple[str, str]]:
        own = sorted(self.own)
        if not own:
            return []
        cutoff = (time.time() - settings.STALE_CLAIM_SECONDS) * 1000
        stale = []
        for cid, state in zip(own, await self.client().hmget(self.keys["state"], own)):
            if state and state.startswith(b"busy|"):
                _, job_id, _, since = state.decode().split("|", 3)
                entry = self.entries.get(cid)
                if float(since) < cutoff and entry is not None:
                    stale.append((entry.channel_name, job_id))
        return stale

    async def forget_dead_channels(self, *, process_id: int, live: frozenset[str]) -> None:
        await self._refresh()
        for cid in list(self.own):
            entry = self.entries.get(cid)
            if entry is not None and entry.channel_name not in live:
                await self.remove(connection_id=cid)

    async def drained(self) -> None:
        await self.mirror.drained()
