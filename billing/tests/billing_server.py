"""A real HTTP billing backend for tests, speaking the original's check/complete commands."""

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.raw)


@dataclass
class BillingServer:
    """Answers `check` from `accounts` (token → answer, default ok) and `complete` with 200.

    `stop()` and `start()` again on the same port simulate an outage.
    """

    port: int
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/billing"

    def commands(self, name: str) -> list[Received]:
        return [r for r in self.received if r.body.get("command") == name]

    def start(self) -> "BillingServer":
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                backend.received.append(Received(dict(self.headers), raw))
                body = json.loads(raw)
                answer: dict[str, Any] = {}
                if body.get("command") == "check":
                    answer = backend.accounts.get(body.get("bill_to_token"), {"ok": True, "user_id": "u1"})
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
