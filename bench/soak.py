"""Soak: many clients, workers over two processes, workers killed and restarted.

    python -m bench.soak --seconds 60 --clients 64 --workers 8
    python -m bench.soak --mid-stream --seconds 60 --clients 32 --workers 8 --kill-every 2
    python -m bench.soak --mid-stream --embedded ...

Needs DATABASE_URL (PostgreSQL, migrated) and REDIS_URL: the two Queenbee
processes must share them; `--embedded` runs one process on a fresh SQLite file
and the in-memory layer instead. Every reply carries its request's own tag in
every chunk, so a reply delivered to the wrong caller (or a foreign chunk in a
stream) is counted. Exits non-zero on any misdelivery, hung request or busy
connection left over at the end.

`--mid-stream`: every request is a stream (chat and completions in turn) of a
deterministic answer, `TAG:0 TAG:1 … TAG:23`, a token every few milliseconds,
and the killer picks a worker that is streaming. Workers announce "continue"
and answer continuation jobs from where the delivered text ends, so the share
of streams that complete with exactly the whole text measures continuation
(routing/continuation.py); crossed, duplicated and missing chunks are counted,
and the continuations per stream are read from the recorded jobs.
"""

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testkit.fake_worker import Delay, FakeWorker, chat_reply, completion_chunks, delivered_of, rest_of, stream_chunks  # noqa: E402
from testkit.server import ROOT, QueenProcess  # noqa: E402

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
TOKEN = "soak-token"
# A request that gets no answer in this long counts as hung (the server's own
# timeouts are far shorter, so only a lost request reaches it).
HUNG_AFTER = 60.0


def tagged(job):
    """Reply with the request's tag in every chunk, after a short think."""
    req = job["openai_req"]
    tag = req["messages"][-1]["content"]
    yield Delay(random.uniform(0.005, 0.05))
    if req.get("stream"):
        for chunk in stream_chunks([f"{tag} "] * 8):
            yield chunk
        yield {}
    else:
        yield chat_reply(tag)


# --mid-stream: the deterministic answer's length and pace (a stream lasts about
# 0.3 s, so a worker killed every few seconds is often caught mid-answer).
ANSWER_TOKENS = 24
TOKEN_SECONDS = 0.012


def answer(tag: str) -> list[str]:
    return [f"{tag}:{i} " for i in range(ANSWER_TOKENS)]


class Streamer:
    """A worker's script for --mid-stream: the deterministic answer, continued
    from where a continuation job's delivered text ends."""

    def __init__(self) -> None:
        self.streaming = False

    def __call__(self, job):
        req = job["openai_req"]
        if "messages" in req:
            tag = req["messages"][0]["content"]
            rest = rest_of(answer(tag), delivered_of(job))
            chunks = stream_chunks(rest)
        else:
            tag = req["prompt"].split("|")[0]
            rest = rest_of(answer(tag), delivered_of(job, f"{tag}|"))
            chunks = completion_chunks(rest)
        chunks[-1]["usage"] = {"prompt_tokens": 5, "completion_tokens": len(rest), "total_tokens": 5 + len(rest)}
        yield Delay(random.uniform(0.005, 0.03))
        self.streaming = True
        for chunk in chunks:
            yield chunk
            yield Delay(TOKEN_SECONDS)
        self.streaming = False
        yield {}


@dataclass
class StreamTally:
    streams: int = 0
    exact: int = 0  # the whole answer, in order, one [DONE]
    error_events: int = 0  # ended with an error event (continuations exhausted, or none could)
    crossed: int = 0  # a chunk of another caller's answer
    duplicated: int = 0  # a token delivered twice
    missing: int = 0  # ended with [DONE] but a token missing
    cut: int = 0  # ended with neither [DONE] nor an error event
    hung: int = 0
    refused: dict = field(default_factory=dict)  # status codes before any chunk
    keepalives: int = 0
    errors: Counter = field(default_factory=Counter)  # the error events' messages
    ids: list = field(default_factory=list)  # the streams' ids, to read their records
    error_ids: list = field(default_factory=list)


async def one_stream(client: httpx.AsyncClient, tag: str, chat: bool, tally: StreamTally) -> None:
    if chat:
        url, body = "/v1/chat/completions", {"messages": [{"role": "user", "content": tag}]}
    else:
        url, body = "/v1/completions", {"prompt": f"{tag}|", "max_tokens": ANSWER_TOKENS}
    body.update(model=MODEL, stream=True, gpu_filter={"capabilities": ["soak"]}, ft_timeout=5)
    tally.streams += 1
    text, done, error, stream_id = "", 0, False, None
    try:
        async with client.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                await r.aread()
                tally.refused[r.status_code] = tally.refused.get(r.status_code, 0) + 1
                return
            async for line in r.aiter_lines():
                if line.startswith(":"):
                    tally.keepalives += 1
                if not line.startswith("data: "):
                    continue
                if line[6:] == "[DONE]":
                    done += 1
                    continue
                event = json.loads(line[6:])
                if "id" in event and stream_id is None:
                    stream_id = event["id"]
                    tally.ids.append(stream_id)
                if "error" in event:
                    error = True
                    tally.errors[event["error"]["message"][:80]] += 1
                    continue
                for choice in event["choices"]:
                    text += (choice["delta"].get("content") or "") if chat else choice.get("text") or ""
    except httpx.TimeoutException:
        tally.hung += 1
        return
    except httpx.HTTPError:
        tally.refused["connection"] = tally.refused.get("connection", 0) + 1
        return
    pieces = [p for p in text.split(" ") if p]
    indices = [int(p.rsplit(":", 1)[1]) for p in pieces if p.rsplit(":", 1)[0] == tag]
    if len(indices) != len(pieces):
        tally.crossed += 1
    elif len(set(indices)) != len(indices) or done > 1:
        tally.duplicated += 1
    elif error:
        tally.error_events += 1
        tally.error_ids.append(stream_id or "")
    elif not done:
        tally.cut += 1
    elif text == "".join(answer(tag)):
        tally.exact += 1
    else:
        tally.missing += 1


async def stream_clients(urls: list[str], n: int, seconds: float, tally: StreamTally) -> None:
    await client_loops(urls, n, seconds, lambda client, tag, odd: one_stream(client, tag, chat=odd, tally=tally))


def mid_stream_killer(processes, workers: list[FakeWorker], stop: threading.Event, every: float, log: list) -> None:
    """Every few seconds, kill a worker that is streaming (the first to be, within
    a second) and restart it (same key) a moment later."""
    while not stop.wait(every):
        deadline = time.monotonic() + 1.0
        streaming = []
        while not streaming and time.monotonic() < deadline:
            streaming = [i for i, w in enumerate(workers) if w.script.streaming]
            time.sleep(0.005)
        i = random.choice(streaming or range(len(workers)))
        victim = workers[i]
        victim.crash()
        log.append(bool(streaming))
        time.sleep(0.5)
        home = processes[i % len(processes)]
        workers[i] = streamer_worker(home.ws_url, privkey=victim.privkey)


def streamer_worker(url: str, **kwargs) -> FakeWorker:
    return FakeWorker(url, script=Streamer(), capabilities=["llama-infer", "soak"], features=["continue"], **kwargs).start()


def continuations_of(ids: list[str]) -> tuple[Counter, int]:
    """Continuations per recorded stream (the streams' own rows) and their failed parts."""
    _django()
    from routing.models import Job

    per_stream = Counter()
    for at in range(0, len(ids), 500):
        per_stream.update(Job.objects.filter(public_id__in=ids[at:at + 500]).values_list("continuations", flat=True))
    wanted = set(ids)
    parts = sum(1 for p in Job.objects.filter(public_id__contains="-part").values_list("public_id", flat=True) if p.rsplit("-part", 1)[0] in wanted)
    return per_stream, parts


def _django() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "queenbee_site.settings")
    django.setup()


@dataclass
class Tally:
    requests: int = 0
    successes: int = 0
    clean_failures: int = 0
    misdelivered: int = 0
    truncated: int = 0
    hung: int = 0
    failures: dict = field(default_factory=dict)


async def one_request(client: httpx.AsyncClient, tag: str, stream: bool, tally: Tally) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": tag}], "stream": stream, "gpu_filter": {"capabilities": ["soak"]}, "ft_timeout": 5}
    tally.requests += 1
    try:
        if not stream:
            r = await client.post("/v1/chat/completions", json=body)
            if r.status_code == 200:
                ok = r.json()["choices"][0]["message"]["content"] == tag
                tally.successes += ok
                tally.misdelivered += not ok
            else:
                assert set(r.json()["error"]) >= {"message", "type"}
                tally.clean_failures += 1
                tally.failures[r.status_code] = tally.failures.get(r.status_code, 0) + 1
            return
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                tally.clean_failures += 1
                tally.failures[r.status_code] = tally.failures.get(r.status_code, 0) + 1
                return
            text, done, error = "", False, False
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                event = json.loads(data)
                if "error" in event:
                    error = True
                    break
                for choice in event["choices"]:
                    text += choice["delta"].get("content") or ""
            pieces = [p for p in text.split(" ") if p]
            if any(p != tag for p in pieces):
                tally.misdelivered += 1  # a chunk of another caller's completion
            elif error:
                tally.clean_failures += 1
                tally.failures["stream-error"] = tally.failures.get("stream-error", 0) + 1
            elif done and len(pieces) == 8:
                tally.successes += 1
            else:
                tally.truncated += 1  # ended without [DONE] or an error event
    except httpx.TimeoutException:
        tally.hung += 1
    except httpx.HTTPError:
        tally.clean_failures += 1
        tally.failures["connection"] = tally.failures.get("connection", 0) + 1


async def clients(urls: list[str], n: int, seconds: float, tally: Tally) -> None:
    await client_loops(urls, n, seconds, lambda client, tag, odd: one_request(client, tag, stream=odd, tally=tally))


async def client_loops(urls: list[str], n: int, seconds: float, request) -> None:
    """`n` clients, spread over `urls`, each calling `request(client, tag, odd)` in a
    loop until `seconds` have passed (`odd` alternates, for two kinds of request)."""
    deadline = time.monotonic() + seconds

    async def run(index: int) -> None:
        async with httpx.AsyncClient(base_url=urls[index % len(urls)], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=HUNG_AFTER) as client:
            count = 0
            while time.monotonic() < deadline:
                count += 1
                await request(client, f"c{index}-r{count}", bool(count % 2))

    await asyncio.gather(*(run(i) for i in range(n)))


def killer(processes, workers: list[FakeWorker], stop: threading.Event, every: float, log: list) -> None:
    """Kill a random worker every few seconds and restart it (same key) a moment later."""
    while not stop.wait(every):
        i = random.randrange(len(workers))
        victim = workers[i]
        victim.crash()
        time.sleep(0.5)
        home = processes[i % len(processes)]
        workers[i] = FakeWorker(home.ws_url, script=tagged, capabilities=["llama-infer", "soak"], privkey=victim.privkey).start()
        log.append(i)


def leaked_busy_connections() -> int:
    _django()
    from workers.models import Connection

    # The waiting line lives in the servers' memory (or Redis): a request left in
    # it past its deadline holds no connection, so the rows tell every leak.
    return Connection.objects.filter(process__name__startswith="soak-").exclude(state="free").count()


def embedded_env() -> dict[str, str]:
    """A fresh, migrated SQLite file and the in-memory layer (this process reads the file too)."""
    path = ROOT / "tmp" / "soak-embedded.sqlite3"
    path.parent.mkdir(exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    env = {"DATABASE_URL": f"sqlite:///{path}", "REDIS_URL": ""}
    os.environ.update(env)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "queenbee_site.settings"}, check=True)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--kill-every", type=float, default=3.0)
    parser.add_argument("--mid-stream", action="store_true", help="streams only; workers killed mid-answer (continuation)")
    parser.add_argument("--embedded", action="store_true", help="one process, SQLite and the in-memory layer")
    args = parser.parse_args()
    # This process reads the shared database too (DATABASE_URL), so it needs a key
    # like the servers it starts, which inherit this one.
    os.environ.setdefault("SECRET_KEY", "soak-" + "x" * 50)
    if args.embedded:
        env = embedded_env()
    elif os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL"):
        env = {}
    else:
        print("soak needs DATABASE_URL (PostgreSQL) and REDIS_URL, or --embedded", file=sys.stderr)
        return 2
    env.update({"BYPASS_TOKEN": TOKEN, "DEBUG": "false", "ALLOWED_HOSTS": "*", "LOG_LEVEL": "WARNING", "QUEUE_TIMEOUT": "20"})
    processes = [QueenProcess(env, name=f"soak-{n}").start() for n in ("a" if args.embedded else "ab")]
    if args.mid_stream:
        return mid_stream_soak(args, processes)
    workers = [FakeWorker(processes[i % len(processes)].ws_url, script=tagged, capabilities=["llama-infer", "soak"]).start() for i in range(args.workers)]
    time.sleep(1)
    tally, stop, kills = Tally(), threading.Event(), []
    chaos = threading.Thread(target=killer, args=(processes, workers, stop, args.kill_every, kills), daemon=True)
    started = time.monotonic()
    chaos.start()
    try:
        asyncio.run(clients([p.url for p in processes], args.clients, args.seconds, tally))
    finally:
        stop.set()
        chaos.join(10)
    elapsed = time.monotonic() - started
    time.sleep(2)  # let the last drains finish
    leaked = leaked_busy_connections()
    for w in workers:
        w.stop()
    for p in processes:
        p.stop()
    print(f"soak: {elapsed:.0f} s, {args.clients} clients, {args.workers} workers over {len(processes)} processes, {len(kills)} worker kills")
    print(f"requests {tally.requests}  successes {tally.successes}  clean failures {tally.clean_failures} {tally.failures}")
    print(f"misdelivered {tally.misdelivered}  hung {tally.hung}  leaked busy connections or waiters {leaked}")
    print(f"streams cut without [DONE] or an error event {tally.truncated}")
    print(f"throughput {tally.requests / elapsed:.0f} req/s")
    return 1 if (tally.misdelivered or tally.hung or leaked or tally.truncated) else 0


def mid_stream_soak(args, processes: list[QueenProcess]) -> int:
    _django()
    workers = [streamer_worker(processes[i % len(processes)].ws_url) for i in range(args.workers)]
    time.sleep(1)
    tally, stop, kills = StreamTally(), threading.Event(), []
    chaos = threading.Thread(target=mid_stream_killer, args=(processes, workers, stop, args.kill_every, kills), daemon=True)
    started = time.monotonic()
    chaos.start()
    try:
        asyncio.run(stream_clients([p.url for p in processes], args.clients, args.seconds, tally))
    finally:
        stop.set()
        chaos.join(10)
    elapsed = time.monotonic() - started
    time.sleep(2)  # let the last drains and records finish
    leaked = leaked_busy_connections()
    per_stream, failed_parts = continuations_of(tally.ids)
    per_error_stream, _ = continuations_of(tally.error_ids)
    for w in workers:
        w.stop()
    for p in processes:
        p.stop()
    answered = tally.streams - sum(tally.refused.values()) - tally.hung
    continued = sum(n for c, n in per_stream.items() if c)
    recorded = sum(per_stream.values())
    mode = "embedded (SQLite, in-memory layer), 1 process" if args.embedded else "PostgreSQL + Redis, 2 processes"
    print(f"mid-stream soak: {mode}; {elapsed:.0f} s, {args.clients} clients, {args.workers} workers, {len(kills)} kills ({sum(kills)} mid-stream)")
    print(f"streams {tally.streams}  answered {answered}  refused before any chunk {tally.refused}  hung {tally.hung}")
    print(f"complete with exactly the whole text {tally.exact} ({tally.exact / max(answered, 1):.2%} of answered)")
    print(f"ended with an error event {tally.error_events} {dict(tally.errors)}, continuations before the error {dict(per_error_stream)}")
    print(f"missing tokens {tally.missing}  cut without [DONE] or error {tally.cut}")
    print(f"crossed {tally.crossed}  duplicated {tally.duplicated}  leaked busy connections or waiters {leaked}")
    print(f"recorded streams {recorded}, continued {continued}; continuations per stream {dict(sorted(per_stream.items()))}, "
          f"mean {sum(c * n for c, n in per_stream.items()) / max(recorded, 1):.3f}, per continued stream "
          f"{sum(c * n for c, n in per_stream.items()) / max(continued, 1):.2f}; failed parts recorded {failed_parts}")
    print(f"keep-alive comments {tally.keepalives}  throughput {tally.streams / elapsed:.0f} streams/s")
    return 1 if (tally.crossed or tally.duplicated or tally.missing or tally.cut or tally.hung or leaked) else 0


if __name__ == "__main__":
    sys.exit(main())
