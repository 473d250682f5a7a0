"""A swarm of fake workers in one process: asyncio websocket clients speaking the
original protocol (signed connect message), answering at once or after a delay.

    python -m bench.swarm ws://127.0.0.1:8000/worker [more urls] --workers 64

Workers are spread over the URLs in turn. A chat request's last message is its
tag; every reply carries it, and a stream sends `max_tokens` chunks whose
content is `tag|i`, so the load generator can spot foreign, missing or
out-of-order chunks. Prints one JSON line when every worker is connected, then
serves until killed.
"""

import argparse
import asyncio
import json
import os
import sys
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from testkit.fake_worker import connect_message

# Handshakes in flight at once: enough to measure the server's connect rate
# rather than the swarm's, few enough not to trip the listen backlog.
CONNECTING_AT_ONCE = 64


def _reply(req: dict) -> list[str]:
    tag = req["messages"][-1]["content"] if req.get("messages") else str(req.get("prompt", ""))
    base = '{"id":"chatcmpl-w","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    if not req.get("stream"):
        content = json.dumps(tag)
        return [
            '{"id":"chatcmpl-w","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
            f'"message":{{"role":"assistant","content":{content}}},"finish_reason":"stop"}}],'
            '"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}'
        ]
    frames = [base + '"delta":{"role":"assistant"},"finish_reason":null}]}']
    frames += [base + f'"delta":{{"content":{json.dumps(f"{tag}|{i}")}}},"finish_reason":null}}]}}' for i in range(int(req.get("max_tokens") or 32))]
    frames.append(base + '"delta":{},"finish_reason":"stop"}]}')
    frames.append("{}")
    return frames


async def worker(url: str, delay: float, capabilities: list[str], connected: asyncio.Queue, gate: asyncio.Semaphore) -> None:
    async with gate:
        ws = await connect(url, max_size=None, ping_interval=None, compression=None, open_timeout=120)
        message = connect_message(
            privkey=os.urandom(32), capabilities=capabilities, version="0.3.1", gpu_memory_mib=24576.0,
            ram_bytes=64_000_000_000, disk_mib=512_000, models=[], slug="", auth_key="", ln_address="DONT_PAY_ME",
        )
        await ws.send(json.dumps(message))
    connected.put_nowait(1)
    try:
        async for text in ws:
            job = json.loads(text)
            if delay:
                await asyncio.sleep(delay)
            for frame in _reply(job["openai_req"]):
                await ws.send(frame)
    except ConnectionClosed:
        pass


async def run(urls: list[str], count: int, delay: float, capabilities: list[str]) -> None:
    connected: asyncio.Queue = asyncio.Queue()
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)
    started = time.monotonic()
    tasks = [asyncio.create_task(worker(urls[i % len(urls)], delay, capabilities, connected, gate)) for i in range(count)]
    for _ in range(count):
        await connected.get()
    print(json.dumps({"connected": count, "seconds": time.monotonic() - started}), flush=True)
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("urls", nargs="+")
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--capabilities", default="llama-infer")
    args = parser.parse_args()
    try:
        asyncio.run(run(args.urls, args.workers, args.delay, args.capabilities.split(",")))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
