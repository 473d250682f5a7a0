"""Hostile worker sockets: each is closed with a clear reason, and nobody else notices.

Most tests use the shared server. Limits that are slow to reach at their
defaults (connections per address, frames per second, frame size) are tested on
a server of this module's own with small limits.
"""

import json
import socket
import time
import uuid
from urllib.parse import urlsplit

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import connection_count, wait_for
from testkit.fake_worker import FakeWorker, connect_message
from testkit.server import QueenProcess

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
LIMITS = {
    "WORKER_CONNECTS_PER_MINUTE": "20",
    "WORKER_FRAME_RATE": "100",
    "WORKER_FRAME_BURST": "200",
    "WORKER_MAX_FRAME_BYTES": "65536",
    "TRUSTED_PROXIES": "127.0.0.1",
}


@pytest.fixture(scope="module")
def strict_queen(server_env):
    env = {**server_env, **LIMITS, "CACHE_KEY_PREFIX": f"hostile-{uuid.uuid4().hex}"}
    process = QueenProcess(env, name="strict-queen").start()
    yield process
    process.stop()


def open_socket(url: str, *, source: str = "127.0.0.1", headers: dict | None = None):
    """A raw websocket from `source` (any 127.x address is this machine)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10, source_address=(source, 0))
    return connect(url, sock=sock, additional_headers=headers or {}, open_timeout=10, max_size=None)


def close_of(ws, timeout: float = 10) -> tuple[int, str]:
    """Wait for the server to close the socket; its (code, reason)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=deadline - time.monotonic())
    except ConnectionClosed as exc:
        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "")
    except TimeoutError:
        pass
    raise AssertionError("the server did not close the socket")


def fate(ws, first_frame, *, text: bool | None = None, timeout: float = 10) -> tuple[int, str] | str:
    """Send a first frame: the (code, reason) the server closed with, or "open"."""
    try:
        ws.send(first_frame, text=text)
        return close_of(ws, timeout=timeout)
    except ConnectionClosed as exc:  # closed before we could even send
        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "")
    except AssertionError:
        return "open"


def refused(url: str, first_frame, *, text: bool | None = None) -> tuple[int, str] | str:
    with open_socket(url) as ws:
        return fate(ws, first_frame, text=text)


def unsigned_message(**changes) -> dict:
    message = FakeWorker("ws://unused", signed=False).message()
    return {**message, **changes}


# --- Garbage as the first frame ---------------------------------------------------------


def test_a_binary_frame_that_is_not_utf8_is_refused(queen):
    assert refused(queen.ws_url, b"\xff\xfe\x00garbage") == (4002, "frame is not UTF-8 text")


def test_a_text_frame_with_invalid_utf8_is_refused_by_the_websocket_layer(queen):
    code, reason = refused(queen.ws_url, b'{"a": "\xff"}', text=True)
    assert code == 1007  # RFC 6455: invalid payload data
    if queen.server == "daphne":  # autobahn names the problem; uvicorn sends the code alone
        assert "UTF-8" in reason


def test_json_that_is_not_an_object_is_refused(queen):
    assert refused(queen.ws_url, "[1, 2, 3]") == (4002, "frame is not a JSON object")


def test_deeply_nested_json_is_refused(queen):
    nested = '{"cpu_count": 1, "x": ' + "[" * 500 + "]" * 500 + "}"
    assert refused(queen.ws_url, nested) == (4002, "frame is nested deeper than 32 levels")


def test_nesting_past_the_parsers_limit_is_refused_too(queen):
    assert refused(queen.ws_url, "[" * 200_000) == (4002, "frame is not JSON")


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"slug": "s" * 5000}, "slug"),
        ({"ln_address": "x" * 300}, "ln_address"),
        ({"worker_version": "9" * 100}, "worker_version"),
        ({"capabilities": [f"cap{i}" for i in range(100)]}, "capabilities"),
        ({"capabilities": ["c" * 200]}, "capabilities"),
        ({"models": ["m" * 400]}, "models"),
        ({"cpu_count": "sixteen"}, "cpu_count"),
        ({"disk_space": -1}, "disk_space"),
        ({"vram": 10**30}, "vram"),
        ({"nv_gpus": [{"memory": "24GB"}]}, "nv_gpus"),
        ({"nv_gpus": "one"}, "nv_gpus"),
        ({"capabilities": "llama-infer"}, "capabilities"),
    ],
)
def test_huge_or_wrong_typed_connect_fields_are_refused_naming_the_field(queen, changes, field):
    code, reason = refused(queen.ws_url, json.dumps(unsigned_message(**changes)))
    assert code == 4002 and field in reason, reason


def test_a_frame_over_the_size_limit_closes_the_socket(strict_queen, db_access):
    worker = FakeWorker(strict_queen.ws_url).start()
    wait_for(lambda: connection_count(worker.identity) == 1, what="registration")
    worker.send({"pad": "x" * 70_000})
    worker.wait_closed()
    # Both servers name the limit: "... exceeds payload limit of 65536" (daphne),
    # "... exceeds limit of 65536 bytes" (uvicorn).
    assert worker.close_code == 1009 and "limit of 65536" in worker.close_reason
    wait_for(lambda: connection_count(worker.identity) == 0, what="removal")


# --- After registration ---------------------------------------------------------------------


def test_garbage_after_registration_is_counted_not_fatal(start_worker, client, db_access):
    from workers.models import Connection

    worker = start_worker()
    worker.send(b"\xff\xfe")
    worker.send("[1]")
    worker.send('{"a": ' + "[" * 100 + "]" * 100 + "}")
    wait_for(lambda: Connection.objects.filter(worker__identity=worker.identity, bad_frames=3).exists(), what="bad frame count")
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"gpu_filter": {"pubkey": worker.pubkey}})
    assert reply.choices[0].message.content == "Hello from the worker"


def test_a_large_reply_within_the_limit_reaches_the_caller(start_worker, http):
    """Daphne's own limit (1 MiB) would close a worker sending one big image."""
    big = "A" * (3 * 1024 * 1024)

    def script(job):
        yield {"created": 1, "data": [{"b64_json": big}]}

    worker = start_worker(script=script, capabilities=["sdxl"])
    response = http.post("/v1/images/generations", json={"prompt": "a bee", "gpu_filter": {"pubkey": worker.pubkey}})
    assert response.status_code == 200, response.text[:300]
    assert response.json()["data"][0]["b64_json"] == big


def test_a_flood_of_frames_closes_only_that_socket(strict_queen, server_env, db_access):
    import openai

    bystander = FakeWorker(strict_queen.ws_url).start()
    flooder = FakeWorker(strict_queen.ws_url).start()
    wait_for(lambda: connection_count(flooder.identity) == 1 and connection_count(bystander.identity) == 1, what="registration")
    try:
        for i in range(5000):
            flooder.send({"busy": False})
    except ConnectionClosed:
        pass
    flooder.wait_closed()
    assert flooder.close_code == 4029 and "too many frames" in flooder.close_reason
    wait_for(lambda: connection_count(flooder.identity) == 0, what="flooder removal")

    client = openai.OpenAI(base_url=f"{strict_queen.url}/v1", api_key=server_env["BYPASS_TOKEN"], max_retries=0)
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"gpu_filter": {"pubkey": bystander.pubkey}})
    assert reply.choices[0].message.content == "Hello from the worker"
    bystander.stop()


# --- Identity replay -----------------------------------------------------------------------------


def test_a_replayed_connect_message_from_another_address_is_refused(start_worker, db_access):
    worker = start_worker()
    replay = json.dumps(worker.message())
    with open_socket(worker.url, source="127.0.0.2") as ws:
        ws.send(replay)
        assert close_of(ws) == (4003, "this worker identity is already connected from another address")
    assert connection_count(worker.identity) == 1


def test_the_same_identity_may_connect_twice_from_its_own_address(start_worker, db_access):
    worker = start_worker()
    with open_socket(worker.url) as ws:
        ws.send(json.dumps(worker.message()))
        wait_for(lambda: connection_count(worker.identity) == 2, what="second connection")
    wait_for(lambda: connection_count(worker.identity) == 1, what="second connection gone")


def test_an_identity_moves_to_a_new_address_once_its_old_socket_is_gone(queen, db_access):
    worker = FakeWorker(queen.ws_url).start()
    wait_for(lambda: connection_count(worker.identity) == 1, what="registration")
    worker.stop()
    wait_for(lambda: connection_count(worker.identity) == 0, what="removal")
    with open_socket(queen.ws_url, source="127.0.0.3") as ws:
        ws.send(json.dumps(worker.message()))
        wait_for(lambda: connection_count(worker.identity) == 1, what="registration from the new address")


# --- Connections per address --------------------------------------------------------------------------


def test_thousands_of_connects_from_one_address_are_refused_after_the_limit(strict_queen, server_env, db_access):
    import openai

    bystander = FakeWorker(strict_queen.ws_url, slug="bystander").start()
    wait_for(lambda: connection_count(bystander.identity) == 1, what="registration")
    results = []
    for _ in range(60):
        with open_socket(strict_queen.ws_url, source="127.0.0.4") as ws:
            results.append(fate(ws, json.dumps(unsigned_message()), timeout=0.5))
    refusals = [r for r in results if r != "open"]
    # The budget is per minute of the clock: a run that crosses a minute gets two.
    assert len(refusals) >= 60 - 2 * 20
    assert all(r == (4029, "too many connections from your address (over 20 a minute); retry later") for r in refusals), refusals

    client = openai.OpenAI(base_url=f"{strict_queen.url}/v1", api_key=server_env["BYPASS_TOKEN"], max_retries=0)
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"gpu_filter": {"pubkey": bystander.pubkey}})
    assert reply.choices[0].message.content == "Hello from the worker"
    bystander.stop()


def exhaust(url: str, *, source: str, forwarded_for) -> tuple[int, str] | str:
    """Connect over the limit of 20 a minute, each time with `forwarded_for(i)`:
    the first refusal, or "open" if none came. The budget is per minute of the
    clock, so a run that crosses a minute gets a second one: up to 45 tries."""
    for i in range(45):
        with open_socket(url, source=source, headers={"X-Forwarded-For": forwarded_for(i)}) as ws:
            # Past the limit a refusal is due: give it time on a busy machine.
            outcome = fate(ws, json.dumps(unsigned_message()), timeout=0.3 if i < 20 else 1.0)
        if outcome != "open":
            return outcome
    return "open"


def test_forwarded_addresses_count_only_behind_a_trusted_proxy(strict_queen):
    # 127.0.0.1 is a trusted proxy: the forwarded address is the client, with its own budget.
    assert exhaust(strict_queen.ws_url, source="127.0.0.1", forwarded_for=lambda i: "203.0.113.7")[0] == 4029
    with open_socket(strict_queen.ws_url, headers={"X-Forwarded-For": "203.0.113.8"}) as ws:
        assert fate(ws, json.dumps(unsigned_message()), timeout=0.5) == "open"  # another client behind the proxy
    # 127.0.0.5 is no proxy of ours: its header is ignored, so inventing addresses does not help.
    assert exhaust(strict_queen.ws_url, source="127.0.0.5", forwarded_for=lambda i: f"198.51.100.{i}")[0] == 4029


def test_the_server_itself_never_trusts_forwarded_addresses(server_env):
    # With no TRUSTED_PROXIES, a header from this machine's own address is ignored
    # too: the server must not rewrite the peer from it (uvicorn would by default).
    env = {**server_env, **LIMITS, "TRUSTED_PROXIES": "", "CACHE_KEY_PREFIX": f"untrusted-{uuid.uuid4().hex}"}
    process = QueenProcess(env, name="no-proxies-queen").start()
    try:
        assert exhaust(process.ws_url, source="127.0.0.1", forwarded_for=lambda i: f"198.51.100.{i}")[0] == 4029
    finally:
        process.stop()
