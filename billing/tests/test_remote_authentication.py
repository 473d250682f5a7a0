"""With BILLING_URL, every authenticated endpoint asks the billing backend about a token we do not hold."""

import asyncio

import httpx
from asgiref.sync import SyncToAsync

from api import auth
from api.models import ApiKey
from billing import remote
from billing.tests.conftest import BILLING_SECRET, MODEL, tag
from conftest import BYPASS
from finetune.tests.conftest import BASE_MODEL, TRAINING

HI = [{"role": "user", "content": "hi"}]
UPLOAD = {"files": {"file": ("train.jsonl", TRAINING)}, "data": {"purpose": "fine-tune"}}

# Every authenticated endpoint, sync views (files) and async ones alike.
ENDPOINTS = [
    ("GET", "/v1/models", {}),
    ("GET", f"/v1/models/{MODEL}", {}),
    ("POST", "/v1/chat/completions", {"json": {"model": MODEL, "messages": HI}}),
    ("POST", "/v1/completions", {"json": {"model": MODEL, "prompt": "hi"}}),
    ("POST", "/v1/embeddings", {"json": {"model": MODEL, "input": "hi"}}),
    ("POST", "/v1/images/generations", {"json": {"model": "stabilityai/sdxl-turbo", "prompt": "a bee"}}),
    ("GET", "/v1/files", {}),
    ("POST", "/v1/files", UPLOAD),
    ("GET", "/v1/files/file-nope", {}),
    ("GET", "/v1/files/file-nope/content", {}),
    ("DELETE", "/v1/files/file-nope", {}),
    ("GET", "/v1/fine_tuning/jobs", {}),
    ("POST", "/v1/fine_tuning/jobs", {"json": {"model": BASE_MODEL, "training_file": "file-nope"}}),
    ("GET", "/v1/fine_tuning/jobs/ftjob-nope", {}),
    ("POST", "/v1/fine_tuning/jobs/ftjob-nope/cancel", {}),
    ("GET", "/v1/fine_tuning/jobs/ftjob-nope/events", {}),
    ("GET", "/v1/fine_tuning/jobs/ftjob-nope/checkpoints", {}),
    ("GET", "/v1/usage", {}),
    ("GET", "/worker/detail?query=user", {}),  # public, but a key sent must be good
]
READS = [e for e in ENDPOINTS if e[0] == "GET" and "nope" not in e[1] and MODEL not in e[1]]


def call(queen, token: str, method: str, path: str, kwargs: dict) -> httpx.Response:
    return httpx.request(method, f"{queen.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs)


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, (response.request.url, response.text)
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def checks_of(billing_server, token: str) -> int:
    return len([r for r in billing_server.commands("check") if r.body["bill_to_token"] == token])


def test_a_token_the_backend_refuses_is_a_401_on_every_endpoint(remote_queen, billing_server):
    token = f"unknown-{tag()}"
    billing_server.accounts[token] = {"ok": False}
    for method, path, kwargs in ENDPOINTS:
        error = error_of(call(remote_queen, token, method, path, kwargs), 401)
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key"), path
    assert checks_of(billing_server, token) == 1  # one answer, cached for every endpoint after


def test_a_billing_outage_is_a_503_on_every_endpoint_for_a_token_not_yet_checked(remote_queen, billing_server):
    checked = f"user-token-{tag()}"
    assert call(remote_queen, checked, "GET", "/v1/files", {}).status_code == 200
    billing_server.stop()
    try:
        unchecked = f"user-token-{tag()}"
        for method, path, kwargs in ENDPOINTS:
            error = error_of(call(remote_queen, unchecked, method, path, kwargs), 503)
            assert (error["type"], error["code"]) == ("service_unavailable", "billing_unavailable"), path
            assert error["message"] == "The billing service is unavailable; retry shortly."
        for method, path, kwargs in READS:  # the bypass token skips billing; a cached answer still holds
            assert call(remote_queen, BYPASS, method, path, kwargs).status_code == 200, path
            assert call(remote_queen, checked, method, path, kwargs).status_code == 200, path
    finally:
        billing_server.start()


def test_a_token_the_backend_knows_reaches_every_endpoint_even_without_funds(remote_queen, billing_server):
    rich, broke = f"user-token-{tag()}", f"broke-{tag()}"
    billing_server.accounts[broke] = {"ok": False, "user_id": "u-broke"}
    for token in (rich, broke):
        for method, path, kwargs in READS:
            assert call(remote_queen, token, method, path, kwargs).status_code == 200, (token, path)
        uploaded = call(remote_queen, token, "POST", "/v1/files", UPLOAD)
        assert uploaded.status_code == 200, uploaded.text
        assert [f["id"] for f in call(remote_queen, token, "GET", "/v1/files", {}).json()["data"]] == [uploaded.json()["id"]]
    # Work that costs money is refused to the one without funds, before anything starts.
    file_id = call(remote_queen, broke, "GET", "/v1/files", {}).json()["data"][0]["id"]
    body = {"model": BASE_MODEL, "training_file": file_id, "gpu_filter": {"pubkey": "no-such-worker"}}
    error = error_of(call(remote_queen, broke, "POST", "/v1/fine_tuning/jobs", {"json": body}), 429)
    assert error["code"] == "insufficient_quota"
    assert call(remote_queen, broke, "GET", "/v1/fine_tuning/jobs", {}).json()["data"] == []


def test_our_own_keys_are_not_asked_about_at_authentication(remote_queen, billing_server, db_access):
    _, raw = ApiKey.create_key(name=tag())
    billing_server.accounts[raw] = {"ok": False}  # the backend bills it, and does not know it
    for method, path, kwargs in READS:
        assert call(remote_queen, raw, method, path, kwargs).status_code == 200, path
    assert checks_of(billing_server, raw) == 0
    # Inference is still checked at admission, as it always was.
    error_of(call(remote_queen, raw, "POST", "/v1/chat/completions", {"json": {"model": MODEL, "messages": HI}}), 401)
    assert checks_of(billing_server, raw) == 1


def test_a_cached_token_is_authenticated_on_the_event_loop_without_a_thread_hop(
    billing_server, settings, django_db_setup, db_access, monkeypatch
):
    settings.BYPASS_TOKEN = BYPASS
    settings.BILLING_URL = billing_server.url
    settings.BILLING_SECRET = BILLING_SECRET
    settings.BILLING_CHECK_CACHE_SECONDS = 60
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": tag()}}
    monkeypatch.setattr(remote, "_client", None)  # a client of this test's event loop
    _, own_key = ApiKey.create_key(name=tag())
    remote_token = f"user-token-{tag()}"
    hops: list[str] = []
    hop = SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        hops.append(getattr(self.func, "__name__", repr(self.func)))
        return await hop(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)

    async def authenticate_twice() -> tuple[list[str], list[str]]:
        try:
            first = [await auth.authenticate_token(t) for t in (remote_token, own_key, BYPASS)]
            cold = hops[:]
            hops.clear()
            again = [await auth.authenticate_token(t) for t in (remote_token, own_key, BYPASS)]
            assert again == first
            return cold, hops[:]
        finally:
            await remote.client().aclose()

    cold, warm = asyncio.run(authenticate_twice())
    assert "lookup_key" in cold and "get" in cold  # the database and the shared check cache, once
    assert warm == []
    assert checks_of(billing_server, remote_token) == 1 and checks_of(billing_server, own_key) == 0
