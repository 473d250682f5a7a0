"""Per-key limits: requests per minute and concurrent streams, answered 429 with Retry-After."""

import threading
import time

import httpx

from billing.tests.conftest import HI, MODEL, sdk
from conftest import wait_for
from testkit.fake_worker import stream_chunks


def post(queen, raw: str, body: dict) -> httpx.Response:
    return httpx.post(f"{queen.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {raw}"}, timeout=30)


def test_a_key_over_its_requests_per_minute_gets_429_with_retry_after(queen, make_account, proven_worker):
    worker = proven_worker()
    _, raw = make_account(credits=100, requests_per_minute=2)
    if time.time() % 60 > 50:  # the three requests must fall in one minute's window
        time.sleep(61 - time.time() % 60)
    body = {"model": MODEL, "messages": HI, **worker.extra}
    assert [post(queen, raw, body).status_code for _ in range(2)] == [200, 200]
    refused = post(queen, raw, body)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert len(worker.jobs) == 3  # its proof and the two admitted


def test_a_key_over_its_concurrent_streams_gets_429_until_one_ends(queen, make_account, proven_worker):
    release = threading.Event()

    def held_stream(job):
        chunks = stream_chunks(["a", "b"])
        yield chunks[0]
        release.wait(10)
        yield from chunks[1:]
        yield {}

    worker = proven_worker(script=held_stream)
    _, raw = make_account(credits=100, concurrent_streams=1)
    api = sdk(queen, raw)
    first = api.chat.completions.create(model=MODEL, messages=HI, stream=True, extra_body=worker.extra)
    next(iter(first))
    refused = post(queen, raw, {"model": MODEL, "messages": HI, "stream": True, **worker.extra})
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    release.set()
    list(first)

    def another_stream_is_admitted():
        response = post(queen, raw, {"model": MODEL, "messages": HI, "stream": True, **worker.extra})
        return response.status_code == 200

    wait_for(another_stream_is_admitted, what="slot released")
