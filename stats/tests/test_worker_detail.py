"""`GET /worker/detail` shows what workers can do, never who they are."""

import os

import httpx

from api.models import ApiKey
from workers.models import Worker


def test_it_lists_live_workers_and_never_an_identifier(start_worker, queen, db_access):
    auth_key = f"owner-{os.urandom(8).hex()}"
    ln_address = f"payme{os.urandom(4).hex()}@getalby.com"
    slug = f"rig{os.urandom(4).hex()}"
    tag = f"detail-{os.urandom(3).hex()}"
    workers = [
        start_worker(capabilities=["llama-infer", tag], slug=slug, auth_key=auth_key, ln_address=ln_address),
        start_worker(capabilities=["llama-infer", tag], auth_key=f"uid:{os.urandom(4).hex()}"),
    ]
    response = httpx.get(f"{queen.url}/worker/detail", timeout=10)
    assert response.status_code == 200
    text = response.text
    mine = [e for e in response.json() if tag in e["capabilities"]]
    assert len(mine) == 2
    assert set(mine[0]) == {"busy", "worker_version", "capabilities", "gpu_cnt", "context_length", "perf", "cnt", "punished"}
    secrets = {auth_key, ln_address, slug, "127.0.0.1", *(w.pubkey for w in workers)}
    secrets |= {w.pubkey[:20] for w in workers}  # not even a prefix
    secrets |= set(Worker.objects.filter(connections__isnull=False).values_list("pubkey", flat=True)) - {""}
    leaked = [s for s in secrets if s in text]
    assert not leaked


def test_a_query_keeps_only_the_workers_that_identifier_owns(start_worker, queen, db_access):
    auth_key = f"owner-{os.urandom(8).hex()}"
    user_id = os.urandom(4).hex()
    by_key = start_worker(auth_key=auth_key, capabilities=["llama-infer", "by-key"])
    start_worker(auth_key=f"uid:{user_id}", capabilities=["llama-infer", "by-uid"])

    def found(query: str) -> list[list[str]]:
        return [
            e["capabilities"]
            for e in httpx.get(f"{queen.url}/worker/detail", params={"query": query}, timeout=10).json()
        ]

    assert found(by_key.pubkey) == [["by-key", "llama-infer"]]
    assert found(auth_key) == [["by-key", "llama-infer"]]
    assert found(user_id) == [["by-uid", "llama-infer"]]
    assert found(f"uid:{user_id}") == [["by-uid", "llama-infer"]]
    assert found("nobody-at-all") == []


def test_query_user_lists_the_workers_connected_with_the_callers_key(start_worker, queen, db_access):
    _, raw = ApiKey.create_key(name="detail-test")
    start_worker(auth_key=raw, capabilities=["llama-infer", "mine"])
    start_worker(capabilities=["llama-infer", "not-mine"])
    response = httpx.get(
        f"{queen.url}/worker/detail", params={"query": "user"}, headers={"Authorization": f"Bearer {raw}"}, timeout=10
    )
    assert [e["capabilities"] for e in response.json()] == [["llama-infer", "mine"]]
    anonymous = httpx.get(f"{queen.url}/worker/detail", params={"query": "user"}, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "invalid_api_key"
