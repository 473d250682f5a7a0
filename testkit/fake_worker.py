"""A scripted worker that speaks the original workerbee protocol over a real websocket.

It sends the connect message exactly as the original worker builds it (field order,
units, signature recipe of reference §2.2), then serves one job at a time: for each
job envelope it runs its script, which yields what to do next:

  dict         send it as a JSON text frame
  str          send it as a raw text frame (garbage, on purpose)
  bytes        send a binary frame
  Delay(s)     sleep
  Disconnect() close the socket
"""

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from workers.signature import public_key_b64, sign_connect_message


@dataclass(frozen=True)
class Delay:
    seconds: float


@dataclass(frozen=True)
class Disconnect:
    pass


Action = dict | str | bytes | Delay | Disconnect
Script = Callable[[dict[str, Any]], Iterable[Action]]


def chat_reply(text: str = "Hello from the worker", *, prompt_tokens: int = 7) -> dict[str, Any]:
    """What llama-cpp-python answers to a non-stream chat request."""
    return {
        "id": "chatcmpl-worker",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "/models/model.gguf",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()), "total_tokens": prompt_tokens + len(text.split())},
    }


def stream_chunks(tokens: list[str]) -> list[dict[str, Any]]:
    """The chunks llama-cpp-python streams: role first, one token each, then finish."""
    base = {"id": "chatcmpl-worker", "object": "chat.completion.chunk", "created": int(time.time()), "model": "/models/model.gguf"}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}]
    chunks += [{**base, "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]} for t in tokens]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return chunks


def default_script(job: dict[str, Any]) -> Iterable[Action]:
    """Answer every job type the way the original worker does."""
    url, req = job["openai_url"], job["openai_req"]
    if url == "/v1/embeddings":
        inputs = req["input"] if isinstance(req["input"], list) else [req["input"]]
        yield {
            "object": "list",
            "model": req["model"],
            "data": [{"object": "embedding", "embedding": [0.1 * (i + 1), 0.2, 0.3], "index": i} for i in range(len(inputs))],
            "usage": {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)},
        }
    elif url == "/v1/images/generations":
        png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
        yield {"created": int(time.time()), "data": [{"b64_json": png}] * req.get("n", 1)}
    elif req.get("stream"):
        yield from stream_chunks(["Hello", " from", " the", " worker"])
        yield {}
    else:
        yield chat_reply()


def connect_message(
    *,
    privkey: bytes | None,
    capabilities: list[str],
    version: str,
    gpu_memory_mib: float,
    ram_bytes: int,
    disk_mib: int,
    models: list[str],
    slug: str,
    auth_key: str,
    ln_address: str,
    features: list[str] | None = None,
    context_length: int = 0,
) -> dict[str, Any]:
    """The original worker's connect message, in its wire order, signed before the GPUs are filled in."""
    msg: dict[str, Any] = {
        "worker_version": version,
        "capabilities": capabilities,
        "pubkey": public_key_b64(privkey) if privkey else "",
        "slug": slug,
        "sig": "",
        "ln_url": ln_address,
        "ln_address": ln_address,
        "auth_key": auth_key,
        "cpu_count": 16,
        "disk_space": disk_mib,
        "vram": ram_bytes,
        "nv_gpu_count": None,
        "nv_driver_version": None,
        "nv_gpus": [],
        "cl_driver_version": None,
        "cl_gpus": [],
        "web_gpus": [],
        "models": models,
    }
    if context_length:
        msg["context_length"] = context_length  # Queenbee's additive field, signed; the original sends none
    if features:
        msg["features"] = features  # Queenbee's additive field; the original sends none
    if privkey:
        msg["sig"] = sign_connect_message(msg, privkey)
    if gpu_memory_mib:
        msg["nv_gpu_count"] = 1
        msg["nv_driver_version"] = "535.104.05"
        msg["nv_gpus"] = [{"name": "nvidia fake", "uuid": "GPU-fake", "memory": float(gpu_memory_mib), "clock": 400, "clock_unit": "MHz"}]
    return msg


@dataclass
class FakeWorker:
    url: str
    script: Script = default_script
    capabilities: list[str] = field(default_factory=lambda: ["llama-infer"])
    version: str = "0.3.1"
    gpu_memory_mib: float = 24576.0
    ram_bytes: int = 64_000_000_000
    disk_mib: int = 512_000
    models: list[str] = field(default_factory=list)
    slug: str = ""
    auth_key: str = ""
    ln_address: str = "DONT_PAY_ME"
    features: list[str] = field(default_factory=list)
    context_length: int = 0  # the context window it announces; 0 sends none, as the original
    signed: bool = True
    privkey: bytes = field(default_factory=lambda: os.urandom(32))
    jobs: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    # Job envelopes that arrived while a job was still running: the coordinator
    # must never do that (one job per connection), so tests assert it stays 0.
    overlaps: int = 0
    # Like the original worker: connect again after the socket closes, trying
    # `fallback_urls` in turn (another process behind the same load balancer).
    reconnect: bool = False
    fallback_urls: list[str] = field(default_factory=list)
    connects: int = 0

    def __post_init__(self) -> None:
        self._pending: list[str] = []
        self._thread: threading.Thread | None = None
        self._ws = None
        self._stop = threading.Event()
        self.connected = threading.Event()

    @property
    def pubkey(self) -> str:
        return public_key_b64(self.privkey) if self.signed else ""

    @property
    def identity(self) -> str:
        return f"{self.pubkey}:{self.slug}" if self.slug else self.pubkey

    def message(self) -> dict[str, Any]:
        return connect_message(
            privkey=self.privkey if self.signed else None,
            capabilities=self.capabilities,
            version=self.version,
            gpu_memory_mib=self.gpu_memory_mib,
            ram_bytes=self.ram_bytes,
            disk_mib=self.disk_mib,
            models=self.models,
            slug=self.slug,
            auth_key=self.auth_key,
            ln_address=self.ln_address,
            features=self.features,
            context_length=self.context_length,
        )

    def start(self, first_frame: str | bytes | None = None) -> "FakeWorker":
        self._connect(self.url, first_frame)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _connect(self, url: str, first_frame: str | bytes | None = None) -> None:
        self._ws = connect(url, open_timeout=10, max_size=None)
        self._ws.send(first_frame if first_frame is not None else json.dumps(self.message(), ensure_ascii=False))
        self.connects += 1
        self.connected.set()

    def _run(self) -> None:
        urls = [self.url, *self.fallback_urls]
        attempt = 0
        while True:
            self._serve()
            if not self.reconnect or self._stop.is_set():
                return
            self.connected.clear()
            while not self._stop.is_set():
                attempt += 1
                time.sleep(min(0.1 * attempt, 1.0))
                try:
                    self._connect(urls[attempt % len(urls)])
                    break
                except (OSError, ConnectionClosed, TimeoutError):
                    continue

    def send(self, frame: Action) -> None:
        self._ws.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))

    def _sleep_watching(self, seconds: float) -> None:
        """Sleep, but notice any frame the coordinator sends meanwhile."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                self._pending.append(self._ws.recv(timeout=remaining))
                self.overlaps += 1
            except TimeoutError:
                return

    def _next_job(self) -> str:
        return self._pending.pop(0) if self._pending else self._ws.recv()

    def _serve(self) -> None:
        try:
            while True:
                job = json.loads(self._next_job())
                self.jobs.append(job)
                for action in self.script(job):
                    if isinstance(action, Delay):
                        self._sleep_watching(action.seconds)
                    elif isinstance(action, Disconnect):
                        self._ws.close()
                        return
                    else:
                        self.send(action)
        except (ConnectionClosed, OSError):
            pass
        finally:
            if self._ws.close_code is not None:
                self.close_code = self._ws.close_code
                self.close_reason = self._ws.close_reason or ""

    def wait_closed(self, timeout: float = 10) -> None:
        self._thread.join(timeout)

    def crash(self) -> None:
        """Die like a killed process: the TCP connection drops, no closing handshake."""
        self._stop.set()
        try:
            self._ws.socket.shutdown(2)
        except OSError:
            pass

    def stop(self) -> None:
        self._stop.set()
        if self._ws is not None:
            self._ws.close()
        if self._thread is not None:
            self._thread.join(5)


def delivered_of(job: dict[str, Any], prompt: str = "") -> str:
    """The text a continuation job says the caller already has: the final assistant
    message of a chat marked `continue_final_message`, or what follows `prompt`
    in a completion's prompt. "" for an ordinary job."""
    req = job["openai_req"]
    if "messages" in req:
        last = req["messages"][-1]
        return last["content"] if req.get("continue_final_message") and last.get("role") == "assistant" else ""
    return req["prompt"][len(prompt):] if req["prompt"].startswith(prompt) else ""


def rest_of(tokens: list[str], delivered: str) -> list[str]:
    """The tokens of a deterministic answer that follow `delivered` (which may end mid-token)."""
    text = "".join(tokens)
    assert text.startswith(delivered), f"the continuation job's text {delivered!r} is not a prefix of the answer"
    done, rest = 0, []
    for token in tokens:
        if done >= len(delivered):
            rest.append(token)
        elif done + len(token) > len(delivered):
            rest.append(token[len(delivered) - done:])
        done += len(token)
    return rest


def completion_chunks(tokens: list[str]) -> list[dict[str, Any]]:
    """The chunks llama-cpp-python streams for /v1/completions: one token each, then finish."""
    base = {"id": "cmpl-worker", "object": "text_completion", "created": int(time.time()), "model": "/models/model.gguf"}
    chunks = [{**base, "choices": [{"index": 0, "text": t, "logprobs": None, "finish_reason": None}]} for t in tokens]
    chunks.append({**base, "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]})
    return chunks
