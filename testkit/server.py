"""Run real Queenbee server processes for tests and benchmarks.

Under daphne, Queenbee's default server, unless QUEENBEE_TEST_SERVER=uvicorn
(the supported alternative, queenbee_site/uvicorn_server.py; .ci/run runs the
server-facing tests under it too).
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the test run that started it dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url(db_settings: dict) -> str:
    """A DATABASE_URL for Django's database settings (as pytest-django left them)."""
    if db_settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db_settings['NAME']}"
    user = db_settings.get("USER") or "postgres"
    password = f":{db_settings['PASSWORD']}" if db_settings.get("PASSWORD") else ""
    host = db_settings.get("HOST") or "127.0.0.1"
    port = db_settings.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db_settings['NAME']}"


SERVERS = ("daphne", "uvicorn")
QUEENBEE_APP = "queenbee_site.asgi:application"


def default_server() -> str:
    server = os.environ.get("QUEENBEE_TEST_SERVER", "daphne")
    if server not in SERVERS:
        raise ValueError(f"QUEENBEE_TEST_SERVER must be one of {SERVERS}, not {server!r}")
    return server


def server_command(server: str, port: int, app: str) -> list[str]:
    """The command line of an ASGI server, as the README runs it: daphne, or
    Queenbee's uvicorn launcher (uvicorn with Queenbee's defaults). The bench's
    floors are other applications under the same uvicorn settings."""
    if server == "daphne":
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app]
    if server == "uvicorn":
        if app == QUEENBEE_APP:
            return [sys.executable, "-m", "queenbee_site.uvicorn_server", "--host", "127.0.0.1", "--port", str(port)]
        return [
            sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop",
            "--http", "httptools", "--ws", "websockets-sansio", "--ws-per-message-deflate", "false",
            "--no-access-log", "--lifespan", "off", "--no-proxy-headers", app,
        ]
    raise ValueError(f"unknown ASGI server {server!r}")


class QueenProcess:
    """One ASGI server process serving queenbee_site.asgi on a free port, under
    daphne unless `server` or QUEENBEE_TEST_SERVER says uvicorn."""

    def __init__(self, env: dict[str, str], *, name: str, port: int | None = None, app: str = QUEENBEE_APP, ready_path: str = "/worker/stats", server: str | None = None):
        self.server = server or default_server()
        self.port = port or free_port()
        self.app = app
        self.ready_path = ready_path
        self.name = name
        self.env = {**os.environ, **env, "QUEENBEE_PROCESS_NAME": name, "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen | None = None
        self.log_path = ROOT / "tmp" / f"{name}-{os.getpid()}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/worker"

    def start(self, timeout: float = 30) -> "QueenProcess":
        self.log_path.parent.mkdir(exist_ok=True)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            server_command(self.server, self.port, self.app),
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}{self.ready_path}", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start in {timeout}s; see {self.log_path}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)
