"""Queenbee's benchmark: floors and Queenbee side by side, one table.

    python -m bench.run                      # everything (about 10 minutes)
    python -m bench.run --configs embedded --seconds 3 --scale 1000

See bench/README.md for what each phase measures and what it needs.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.client import Connection
from testkit.server import ROOT, QueenProcess

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
TOKEN = "bench-token"
PATH = "/v1/chat/completions"
CHUNKS = 32
# Several people may bench on one machine: each names a database and Redis db of their own.
CLUSTER_DATABASE = os.environ.get("BENCH_DATABASE", "queenbee_bench")
CLUSTER_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
TICKS = os.sysconf("SC_CLK_TCK")
SERVER_ENV = {
    "BYPASS_TOKEN": TOKEN,
    "DEBUG": "false",
    "SECRET_KEY": "bench-" + "x" * 50,
    "ALLOWED_HOSTS": "*",
    "LOG_LEVEL": "WARNING",
    # The swarm connects thousands of workers from one address.
    "WORKER_CONNECTS_PER_MINUTE": "100000000",
    "QUEUE_TIMEOUT": "60",
}


# --- Measuring ----------------------------------------------------------------------


@dataclass
class Phase:
    requests: int = 0
    errors: int = 0
    bad_streams: int = 0
    chunks: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    firsts: list[float] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)

    def pct(self, q: float, values: list[float] | None = None) -> float:
        values = sorted(self.latencies if values is None else values)
        return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> dict:
        return {
            "requests": self.requests, "errors": self.errors, "error_kinds": self.error_kinds, "bad_streams": self.bad_streams,
            "req_s": round(self.rate, 1), "p50_ms": round(self.pct(0.5), 2), "p90_ms": round(self.pct(0.9), 2),
            "p99_ms": round(self.pct(0.99), 2), "first_p50_ms": round(self.pct(0.5, self.firsts), 2),
            "chunks_s": round(self.chunks / self.seconds, 0) if self.seconds else 0,
            "cpu_ms_per_req": round(1000 * self.cpu_seconds / self.requests, 2) if self.requests else None,
        }


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def check(body: bytes, tag: str, stream: bool, chunks: int) -> tuple[bool, int]:
    """(reply is this request's and complete, content chunks seen)."""
    if not stream:
        try:
            return json.loads(body)["choices"][0]["message"]["content"] == tag, 0
        except (ValueError, KeyError, IndexError, TypeError):
            return False, 0
    events = [e[6:] for e in body.decode().split("\n\n") if e.startswith("data: ")]
    if not events or events[-1] != "[DONE]":
        return False, 0
    contents = []
    for event in events[:-1]:
        for choice in json.loads(event).get("choices", []):
            if content := (choice.get("delta") or {}).get("content"):
                contents.append(content)
    return contents == [f"{tag}|{i}" for i in range(chunks)], len(contents)


async def load(urls: list[str], *, concurrency: int, seconds: float = 0, count: int = 0, stream: bool = False, pids: list[int] = ()) -> Phase:
    """Closed loop: `concurrency` keep-alive clients, each sending its next request
    as soon as its last one is answered, for `seconds` (or `count` requests)."""
    phase = Phase()
    deadline = time.monotonic() + seconds if seconds else float("inf")
    left = [count or 10**12]

    async def client(index: int) -> None:
        conn = Connection(urls[index % len(urls)], TOKEN)
        n = 0
        while time.monotonic() < deadline and left[0] > 0:
            left[0] -= 1
            n += 1
            tag = f"c{index}-{n}"
            payload = {"model": MODEL, "messages": [{"role": "user", "content": tag}], "stream": stream, "max_tokens": CHUNKS}
            started = time.perf_counter()
            try:
                reply = await conn.post(PATH, payload)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
                phase.errors += 1
                phase.error_kinds[type(exc).__name__] = phase.error_kinds.get(type(exc).__name__, 0) + 1
                await asyncio.sleep(0.01)
                continue
            phase.latencies.append(time.perf_counter() - started)
            phase.requests += 1
            if reply.status != 200:
                phase.errors += 1
                phase.error_kinds[str(reply.status)] = phase.error_kinds.get(str(reply.status), 0) + 1
                continue
            ok, seen = check(reply.body, tag, stream, CHUNKS)
            phase.chunks += seen
            if stream:
                phase.firsts.append(reply.first_byte)
                phase.bad_streams += not ok
            elif not ok:
                phase.errors += 1
                phase.error_kinds["misdelivered"] = phase.error_kinds.get("misdelivered", 0) + 1
        conn.close()

    cpu0, t0 = cpu_seconds(pids), time.monotonic()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    phase.seconds, phase.cpu_seconds = time.monotonic() - t0, cpu_seconds(pids) - cpu0
    return phase


def standard_phases(urls: list[str], pids: list[int], seconds: float, results: dict, prefix: str = "") -> None:
    run = asyncio.run
    run(load(urls, concurrency=16, seconds=1))  # warm up: connections, caches, pools
    results[prefix + "c1"] = run(load(urls, concurrency=1, count=300, pids=pids)).summary()
    results[prefix + "c16"] = run(load(urls, concurrency=16, seconds=seconds, pids=pids)).summary()
    results[prefix + "c64"] = run(load(urls, concurrency=64, seconds=seconds, pids=pids)).summary()
    results[prefix + "stream_c1"] = run(load(urls, concurrency=1, count=100, stream=True, pids=pids)).summary()
    results[prefix + "stream_c16"] = run(load(urls, concurrency=16, seconds=seconds, stream=True, pids=pids)).summary()


# --- Servers and swarms ---------------------------------------------------------------


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def start_swarm(ws_urls: list[str], workers: int, capabilities: str = "llama-infer") -> tuple[subprocess.Popen, float]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.swarm", *ws_urls, "--workers", str(workers), "--capabilities", capabilities],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("the swarm died before connecting")
    return proc, json.loads(line)["seconds"]


def wait_connected(url: str, expected: int, timeout: float = 300) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if httpx.get(f"{url}/worker/stats", timeout=30).json()["connected"] >= expected:
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"only some of {expected} workers registered in {timeout}s")


def stop_all(procs) -> None:
    for p in procs:
        if isinstance(p, QueenProcess):
            p.stop()
        elif p.poll() is None:
            p.terminate()
            p.wait(30)


def run_floor(name: str, app: str, env: dict, seconds: float, server: str = "daphne") -> dict:
    say(f"floor: {name}")
    server = QueenProcess({**SERVER_ENV, **env}, name=f"bench-{name}", app=app, ready_path="/ready", server=server).start()
    results: dict = {}
    try:
        standard_phases([server.url], [server.proc.pid], seconds, results)
    finally:
        server.stop()
    return results


def prepare_embedded() -> dict:
    path = ROOT / "tmp" / "bench-embedded.sqlite3"
    path.parent.mkdir(exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    env = {"DATABASE_URL": f"sqlite:///{path}", "REDIS_URL": ""}
    migrate(env)
    return env


def prepare_cluster() -> dict:
    import psycopg
    import redis

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {CLUSTER_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {CLUSTER_DATABASE}")
    redis.Redis.from_url(CLUSTER_REDIS).flushdb()
    env = {"DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{CLUSTER_DATABASE}", "REDIS_URL": CLUSTER_REDIS}
    migrate(env)
    return env


def migrate(env: dict) -> None:
    full = {**os.environ, **SERVER_ENV, **env, "DJANGO_SETTINGS_MODULE": "queenbee_site.settings"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=full, check=True)


def run_queenbee(name: str, env: dict, processes: int, seconds: float, scale: list[int], server: str = "daphne") -> dict:
    say(f"queenbee: {name}, {processes} process(es)")
    env = {**SERVER_ENV, **env, "DJANGO_SETTINGS_MODULE": "queenbee_site.settings"}
    servers = [QueenProcess(env, name=f"bench-{name}-{i}", server=server).start() for i in range(processes)]
    urls, ws_urls, pids = [s.url for s in servers], [s.ws_url for s in servers], [s.proc.pid for s in servers]
    results: dict = {}
    swarms: list = []
    try:
        swarms.append(start_swarm(ws_urls, 8)[0])
        wait_connected(urls[0], 8)
        say("8 workers, c=64")
        asyncio.run(load(urls, concurrency=8, seconds=1))
        results["c64_8w"] = asyncio.run(load(urls, concurrency=64, seconds=seconds, pids=pids)).summary()
        swarms.append(start_swarm(ws_urls, 56)[0])
        wait_connected(urls[0], 64)
        say("64 workers: latency, throughput, streams")
        standard_phases(urls, pids, seconds, results)
        connected, rss0 = 64, rss_bytes(pids)
        for target in scale:
            say(f"scale: {target} idle workers")
            t0 = time.monotonic()
            proc, _ = start_swarm(ws_urls, target - (connected - 64), "llama-infer,idle")
            swarms.append(proc)
            wait_connected(urls[0], target + 64, timeout=900)
            added, took = target + 64 - connected, time.monotonic() - t0
            connected = target + 64
            time.sleep(2)
            cpu0 = cpu_seconds(pids)
            time.sleep(5)
            idle_cpu = (cpu_seconds(pids) - cpu0) / 5
            rss = rss_bytes(pids)
            c1 = asyncio.run(load(urls, concurrency=1, count=200, pids=pids)).summary()
            c16 = asyncio.run(load(urls, concurrency=16, seconds=seconds, pids=pids)).summary()
            results[f"scale_{target}"] = {
                "connects_s": round(added / took, 1), "rss_kb_per_worker": round((rss - rss0) / 1024 / target, 1),
                "rss_mb": round(rss / 2**20), "idle_cpu_pct": round(100 * idle_cpu, 1), "c1": c1, "c16": c16,
            }
    finally:
        stop_all(swarms)
        stop_all(servers)
    return results


# --- Report -----------------------------------------------------------------------------


def table(all_results: dict) -> str:
    cols = [c for c in ("bare", "django", "embedded", "cluster") if c in all_results]
    names = {"bare": "bare ASGI", "django": "empty Django view", "embedded": "Queenbee embedded", "cluster": "Queenbee PG+Redis x2"}
    rows = [
        ("c=1 p50 / p90 / p99 ms", "c1", lambda r: f"{r['p50_ms']:.2f} / {r['p90_ms']:.2f} / {r['p99_ms']:.2f}"),
        ("c=1 server CPU ms/req", "c1", lambda r: f"{r['cpu_ms_per_req']}"),
        ("c=16 req/s (p50 ms)", "c16", lambda r: f"{r['req_s']:.0f} ({r['p50_ms']:.1f}) err {r['errors']}"),
        ("c=64 req/s (p50 ms), 64 workers", "c64", lambda r: f"{r['req_s']:.0f} ({r['p50_ms']:.1f}) err {r['errors']}"),
        ("c=64 server CPU ms/req", "c64", lambda r: f"{r['cpu_ms_per_req']}"),
        ("c=64 req/s, 8 workers", "c64_8w", lambda r: f"{r['req_s']:.0f} err {r['errors']}"),
        ("stream c=1 first chunk p50 ms", "stream_c1", lambda r: f"{r['first_p50_ms']:.2f}"),
        ("stream c=16 chunks/s (bad)", "stream_c16", lambda r: f"{r['chunks_s']:.0f} ({r['bad_streams']} bad, {r['errors']} err)"),
    ]
    width = 30
    lines = ["| phase | " + " | ".join(names[c] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, key, fmt in rows:
        cells = [fmt(all_results[c][key]) if key in all_results[c] else "-" for c in cols]
        lines.append(f"| {label:<{width}} | " + " | ".join(cells) + " |")
    for c in ("embedded", "cluster"):
        for key, r in all_results.get(c, {}).items():
            if key.startswith("scale_"):
                lines.append(
                    f"| {names[c]}: {key[6:]} idle workers | connects {r['connects_s']}/s, {r['rss_kb_per_worker']} KB/worker "
                    f"(RSS {r['rss_mb']} MB), idle CPU {r['idle_cpu_pct']}%, c=1 p50 {r['c1']['p50_ms']} ms, "
                    f"c=16 {r['c16']['req_s']:.0f} req/s p50 {r['c16']['p50_ms']} ms |"
                )
    return "\n".join(lines)


def ratios(all_results: dict) -> str:
    out = []
    bare, django = all_results.get("bare"), all_results.get("django")
    for c in ("embedded", "cluster"):
        r = all_results.get(c)
        if not r:
            continue
        if bare:
            # Issue 14's targets, as ratios to the bare ASGI floor of the same run.
            b = bare
            out.append(f"{c}: server CPU per c=64 request {r['c64']['cpu_ms_per_req'] / b['c64']['cpu_ms_per_req']:.1f}x the floor's (target <= 20x); "
                       f"c=64 throughput {r['c64']['req_s'] / b['c64']['req_s']:.3f}x (target >= 0.06x); "
                       f"c=1 added p50 {r['c1']['p50_ms'] - b['c1']['p50_ms']:.2f} ms (target <= 3)")
            out.append(f"{c}: stream c=16 {r['stream_c16']['chunks_s'] / b['stream_c16']['chunks_s']:.3f}x the floor's chunks/s (target >= 0.08x), "
                       f"{r['stream_c16']['bad_streams']} bad streams (target 0); first chunk c=1 "
                       f"{r['stream_c1']['first_p50_ms'] / b['stream_c1']['first_p50_ms']:.1f}x the floor's (target <= 5x); "
                       f"c=64 with 8 workers {r['c64_8w']['errors']} errors (target 0)")
        if django:
            out.append(f"{c}: c=64 throughput {r['c64']['req_s'] / django['c64']['req_s']:.1%} of the empty Django view (target >= 50%)")
    if all_results.get("embedded") and all_results.get("cluster"):
        e, k = all_results["embedded"], all_results["cluster"]
        out.append(f"cluster / embedded: c=64 throughput {k['c64']['req_s'] / e['c64']['req_s']:.1%}, stream chunks/s "
                   f"{k['stream_c16']['chunks_s'] / e['stream_c16']['chunks_s']:.1%} (target >= 70%)")
    for c in ("embedded", "cluster"):
        scales = sorted(int(k[6:]) for k in all_results.get(c, {}) if k.startswith("scale_"))
        if scales:
            big = all_results[c][f"scale_{scales[-1]}"]
            out.append(f"{c}: c=1 p50 with {scales[-1]} idle workers is {big['c1']['p50_ms'] / all_results[c]['c1']['p50_ms']:.2f}x that with 64 (target <= 2x)")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="floors,embedded,cluster", help="comma-separated: floors, embedded, cluster")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each throughput phase")
    parser.add_argument("--scale", default="1000,5000,10000", help="idle worker counts on the embedded default ('' to skip)")
    parser.add_argument("--cluster-scale", default="", help="idle worker counts on PostgreSQL + Redis (off by default: time)")
    parser.add_argument("--server", default="daphne", choices=["daphne", "uvicorn", "both"], help="ASGI server for every process (uvicorn: with uvloop and httptools; both: daphne, then uvicorn)")
    parser.add_argument("--json", default=str(ROOT / "tmp" / "bench-results.json"))
    args = parser.parse_args()
    configs = args.configs.split(",")
    servers = ["daphne", "uvicorn"] if args.server == "both" else [args.server]
    for server in servers:
        results = run_all(configs, args, server)
        json_path = Path(args.json if len(servers) == 1 else args.json.replace(".json", f"-{server}.json"))
        json_path.parent.mkdir(exist_ok=True)
        json_path.write_text(json.dumps(results, indent=1))
        print(f"## {server}")
        print()
        print(table(results))
        print()
        print(ratios(results))
        print()


def run_all(configs: list[str], args, server: str) -> dict:
    scale = [int(n) for n in args.scale.split(",") if n]
    results: dict = {}
    if "floors" in configs:
        results["bare"] = run_floor("bare", "bench.floor_asgi:application", {}, args.seconds, server)
        results["django"] = run_floor("django", "bench.floor_django_asgi:application", {}, args.seconds, server)
    if "embedded" in configs:
        results["embedded"] = run_queenbee("embedded", prepare_embedded(), 1, args.seconds, scale, server)
    if "cluster" in configs:
        results["cluster"] = run_queenbee("cluster", prepare_cluster(), 2, args.seconds, [int(n) for n in args.cluster_scale.split(",") if n], server)
    return results

if __name__ == "__main__":
    main()
