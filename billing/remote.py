"""The client of a remote billing backend (BILLING_URL), compatible with the original's.

Both commands are JSON POSTs to the one URL, as the original sent them, plus the
shared secret as `Authorization: Bearer BILLING_SECRET`:

  {"command": "check", "bill_to_token": …}          → 200 {"ok": bool, "user_id": …}
  {"command": "complete", "bill_to_token": …,
   "pay_to_lnurl": …, "usage": …, "model": …, …}    → 2xx

`complete` never carries the worker's auth key (the original's `pay_to_auth`).
"""

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings
from django.core.cache import cache

from runtime.caching import Expiring

_client: httpx.AsyncClient | None = None


class BillingError(Exception):
    """The backend could not be reached or answered with an error."""

    def __init__(self, message: str, *, refused: bool = False):
        super().__init__(message)
        self.refused = refused  # a 4xx: sending the same command again will not help


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    user_id: str | None


def client() -> httpx.AsyncClient:
    """One client per process, built on first use (its connections are pooled)."""
    global _client
    if _client is None:
        _client = httpx.AsyncClient(timeout=httpx.Timeout(settings.BILLING_COMPLETE_TIMEOUT, connect=5.0))
    return _client


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.BILLING_SECRET}"} if settings.BILLING_SECRET else {}


async def post(body: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    try:
        response = await client().post(settings.BILLING_URL, json=body, headers=_headers(), timeout=timeout)
    except httpx.HTTPError as exc:
        raise BillingError(f"billing backend unreachable: {type(exc).__name__}") from None
    if response.status_code >= 300:
        refused = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
        raise BillingError(f"billing backend answered {response.status_code}", refused=refused)
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    return answer if isinstance(answer, dict) else {}


# Each process also keeps a `check` answer until the shared cache entry expires:
# Django's cache API is sync underneath (every `aget` is a thread hop), and a
# token's every request is checked, at authentication or admission.
_recent = Expiring()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def recent_check(token: str) -> CheckResult | None:
    """The answer this process holds for `token` while it is fresh; no I/O."""
    return _recent.get(_digest(token))[1]


async def check(token: str) -> CheckResult:
    """Whether the backend will pay for a request with `token`, cached for
    BILLING_CHECK_CACHE_SECONDS per token across processes (and in this one)."""
    digest = _digest(token)
    result = recent_check(token)
    if result is not None:
        return result
    cache_key = "qb:billcheck:" + digest
    cached = await cache.aget(cache_key)
    if cached is not None:
        ok, user_id, *expires = cached
        result = CheckResult(ok, user_id)
        # The shared entry's own deadline, so no process trusts an answer longer.
        left = expires[0] - time.time() if expires else settings.BILLING_CHECK_CACHE_SECONDS
        _recent.put(digest, result, seconds=min(left, settings.BILLING_CHECK_CACHE_SECONDS))
        return result
    answer = await post({"command": "check", "bill_to_token": token}, timeout=settings.BILLING_CHECK_TIMEOUT)
    user_id = answer.get("user_id")
    result = CheckResult(ok=answer.get("ok") is True, user_id=None if user_id is None else str(user_id))
    seconds = settings.BILLING_CHECK_CACHE_SECONDS
    await cache.aset(cache_key, (result.ok, result.user_id, time.time() + seconds), timeout=seconds)
    _recent.put(digest, result, seconds=seconds)
    return result


async def complete(payload: dict[str, Any]) -> None:
    await post(payload, timeout=settings.BILLING_COMPLETE_TIMEOUT)
