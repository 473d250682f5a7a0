"""Fixtures for the reference worker's tests: a scripted fake queen and a worker in a thread."""

import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from workerbee.config import Config, load_config
from workerbee.connection import Worker

REPLY_TIMEOUT = 10.0


class FakeQueen:
    """A websocket server playing the coordinator: records connect messages, sends job envelopes.

    `reject` connections are closed right after their connect message (to make
    the worker reconnect); later ones stay open and serve `job()` calls.
    """

    def __init__(self) -> None:
        self.reject = 0
        self.hellos: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self.connected_at: list[float] = []
        self.close_codes: "queue.Queue[int | None]" = queue.Queue()
        self.frames: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self.current: ServerConnection | None = None
        self._server = serve(self._handle, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/worker"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _handle(self, ws: ServerConnection) -> None:
        self.connected_at.append(time.monotonic())
        try:
            hello = json.loads(ws.recv(timeout=REPLY_TIMEOUT))
            if self.reject > 0:
                self.reject -= 1
                self.hellos.put(hello)
                ws.close(4000, "not now")
                return
            self.current = ws
            self.hellos.put(hello)
            for text in ws:
                self.frames.put(json.loads(text))
        except ConnectionClosed:
            pass
        finally:
            self.close_codes.put(ws.close_code)

    def hello(self, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        return self.hellos.get(timeout=timeout)

    def send(self, frame: dict[str, Any] | str) -> None:
        self.current.send(frame if isinstance(frame, str) else json.dumps(frame))

    def next_frame(self, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        return self.frames.get(timeout=timeout)

    def job(self, openai_url: str, openai_req: dict[str, Any]) -> list[dict[str, Any]]:
        """Send one envelope and collect the reply: one frame, or a stream up to `{}` or an error."""
        self.send({"openai_url": openai_url, "openai_req": openai_req})
        frames = [self.next_frame()]
        if openai_req.get("stream"):
            while frames[-1] and "error" not in frames[-1]:
                frames.append(self.next_frame())
        return frames

    def drop_connection(self) -> None:
        self.current.close(1012, "restarting")

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture
def fake_queen() -> Iterator[FakeQueen]:
    queen = FakeQueen()
    yield queen
    queen.stop()


@pytest.fixture
def make_config(tmp_path: Path):
    """A Config read the way the CLI reads it, in a private folder, with fast reconnects."""

    def make(queen_url: str, *extra: str, environ: dict[str, str] | None = None) -> Config:
        argv = [
            "--queen-url", queen_url,
            "--config", str(tmp_path / "config.json"),
            "--models-dir", str(tmp_path / "models"),
            "--hf-cache", str(tmp_path / "hf"),
            "--packaged-model", "false",
            "--backoff-base", "0.1",
            "--backoff-max", "5",
            *extra,
        ]
        return load_config(argv, environ or {})

    return make


@pytest.fixture
def run_worker():
    """Start a Worker in a thread; stopped and joined after the test."""
    started: list[tuple[Worker, threading.Thread]] = []

    def run(config: Config, **kwargs) -> Worker:
        worker = Worker(config, **kwargs)
        thread = threading.Thread(target=worker.run, name="workerbee-test", daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    yield run
    for worker, thread in started:
        worker.stop()
        thread.join(15)
        assert not thread.is_alive(), "the worker did not stop"
