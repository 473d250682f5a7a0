"""Soak: many clients, workers over two processes, workers killed and restarted.

    python -m bench.soak --seconds 60 --clients 64 --workers 8

Needs DATABASE_URL (PostgreSQL, migrated) and REDIS_URL: the two Queenbee
processes must share them. Every reply carries its request's own tag in every
chunk, so a reply delivered to the wrong caller (or a foreign chunk in a stream)
is counted. Exits non-zero on any misdelivery, hung request or busy connection
left over at the end.
"""

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testkit.fake_worker import Delay, FakeWorker, chat_reply, stream_chunks  # noqa: E402
from testkit.server import QueenProcess  # noqa: E402

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
    deadline = time.monotonic() + seconds

    async def run(index: int) -> None:
        async with httpx.AsyncClient(base_url=urls[index % len(urls)], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=HUNG_AFTER) as client:
            count = 0
            while time.monotonic() < deadline:
                count += 1
                await one_request(client, f"c{index}-r{count}", stream=bool(count % 2), tally=tally)

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
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "queenbee_site.settings")
    django.setup()
    from workers.models import Connection, Waiter

    busy = Connection.objects.filter(process__name__startswith="soak-").exclude(state="free").count()
    return busy + Waiter.objects.filter(need__capabilities__contains=["soak"]).count()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--kill-every", type=float, default=3.0)
    args = parser.parse_args()
    if not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")):
        print("soak needs DATABASE_URL (PostgreSQL) and REDIS_URL", file=sys.stderr)
        return 2
    env = {"BYPASS_TOKEN": TOKEN, "DEBUG": "false", "SECRET_KEY": "soak-" + "x" * 50, "ALLOWED_HOSTS": "*", "LOG_LEVEL": "WARNING", "QUEUE_TIMEOUT": "20"}
    processes = [QueenProcess(env, name=f"soak-{n}").start() for n in "ab"]
    workers = [FakeWorker(processes[i % 2].ws_url, script=tagged, capabilities=["llama-infer", "soak"]).start() for i in range(args.workers)]
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
    print(f"soak: {elapsed:.0f} s, {args.clients} clients, {args.workers} workers over 2 processes, {len(kills)} worker kills")
    print(f"requests {tally.requests}  successes {tally.successes}  clean failures {tally.clean_failures} {tally.failures}")
    print(f"misdelivered {tally.misdelivered}  hung {tally.hung}  leaked busy connections or waiters {leaked}")
    print(f"streams cut without [DONE] or an error event {tally.truncated}")
    print(f"throughput {tally.requests / elapsed:.0f} req/s")
    return 1 if (tally.misdelivered or tally.hung or leaked or tally.truncated) else 0


if __name__ == "__main__":
    sys.exit(main())
