"""API-key authentication: `Authorization: Bearer <key>`, on every authenticated endpoint.

A token is the bypass token, one of our API keys (an `ApiKey` row), or a token an
installed `Voucher` vouches for. The voucher is the remote billing backend
(BILLING_URL), which billing's AppConfig installs at start: api sits below billing
and never imports it. A token nobody knows is a 401 and a voucher that does not
answer is a 503, whatever the endpoint.

Where it runs: async views inherit `api.api_view.ApiView`, which resolves the
caller on the event loop (`resolve`) before adrf's thread-bound `initial()`; the
authenticator then only hands the result over. A key seen within
KEY_CACHE_SECONDS and a check still cached cost no thread hop and no I/O. Sync
views (/v1/files) authenticate in the thread Django runs them in, as DRF does.

This module must not import DRF or adrf views: DRF imports it while defining its
own APIView (DEFAULT_AUTHENTICATION_CLASSES).
"""

import hmac
from dataclasses import dataclass, field
from typing import Protocol

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.conf import settings
from rest_framework import authentication, exceptions

from runtime.caching import Expiring

from .hashing import hash_secret
from .models import ApiKey

# A key's lookup is cached this long per process: a deactivated key stops
# working within a minute, and the hot path skips a query per request.
KEY_CACHE_SECONDS = 60.0
_keys = Expiring()
BAD_KEY = "Incorrect API key provided. Send a valid key as 'Authorization: Bearer YOUR_KEY'."


@dataclass(frozen=True)
class Caller:
    """Who is calling: an API key, a token the remote billing backend vouches for, or the bypass token."""

    api_key_id: int | None
    label: str
    is_authenticated: bool = True
    # With a voucher (BILLING_URL): the caller's token, which the remote backend
    # bills (`bill_to_token`). Never printed.
    bill_to: str = field(default="", repr=False, compare=False)


BYPASS_CALLER = Caller(api_key_id=None, label="bypass")


# --- Local keys ---------------------------------------------------------------------------


def _is_bypass(token: str) -> bool:
    return bool(settings.BYPASS_TOKEN) and hmac.compare_digest(token, settings.BYPASS_TOKEN)


def lookup_key(digest: str) -> Caller | None:
    """The active API key with this hash, from the database (and remembered)."""
    row = ApiKey.objects.filter(key_hash=digest, is_active=True).values_list("pk", "prefix").first()
    caller = Caller(api_key_id=row[0], label=row[1]) if row else None
    _keys.put(digest, caller, seconds=KEY_CACHE_SECONDS)
    return caller


def caller_for_token(token: str) -> Caller | None:
    """The bypass caller or a local key's caller (sync: may query the database)."""
    if _is_bypass(token):
        return BYPASS_CALLER
    digest = hash_secret(token)
    hit, caller = _keys.get(digest)
    return caller if hit else lookup_key(digest)


async def acaller_for_token(token: str) -> Caller | None:
    """`caller_for_token` for async code: a thread hop only when the key is not cached."""
    if _is_bypass(token):
        return BYPASS_CALLER
    digest = hash_secret(token)
    hit, caller = _keys.get(digest)
    return caller if hit else await database_sync_to_async(lookup_key)(digest)


# --- Tokens vouched for by the billing backend ---------------------------------------------


class Vouch(Protocol):
    """A voucher's answer about a token: whether it pays for requests, and whose it is
    (None: the voucher does not know the token)."""

    ok: bool
    user_id: str | None


class Voucher(Protocol):
    """Vouches for tokens that are not our keys, and bills every request by its token, ours too
    (billing.backends.RemoteBilling)."""

    def recent(self, token: str) -> Vouch | None:
        """The answer this process holds for `token` while it is fresh; no I/O."""

    async def check(self, token: str) -> Vouch:
        """Ask about `token` (cached); BillingUnavailable (503) when nobody answers."""


_voucher: Voucher | None = None


def install_voucher(voucher: Voucher | None) -> None:
    """Called once at start by the chosen billing backend (and again when a test changes it)."""
    global _voucher
    _voucher = voucher


def remote_caller(token: str, *, local: Caller | None) -> Caller:
    """A caller whose requests the remote backend bills (`bill_to`)."""
    if local is not None:
        return Caller(api_key_id=local.api_key_id, label=local.label, bill_to=token)
    return Caller(api_key_id=None, label=f"remote-{hash_secret(token)[:12]}", bill_to=token)


def vouched(token: str, result: Vouch) -> Caller:
    """The caller for a token we do not hold, by the backend's `check`.

    Only a token the backend does not know is refused here; one it knows without
    funds is a caller like any other (it may read its files and usage) and gets
    429 at admission, before any work is started.
    """
    if not result.ok and result.user_id is None:
        raise exceptions.AuthenticationFailed(BAD_KEY)
    return remote_caller(token, local=None)


def _without_check(token: str, local: Caller | None) -> Caller | None:
    """The caller when the backend need not be asked; None when it must vouch for the token."""
    if local is BYPASS_CALLER:
        return local
    if _voucher is None:
        if local is None:
            raise exceptions.AuthenticationFailed(BAD_KEY)
        return local
    if local is not None:
        # One of our keys: the backend checks its funds at admission, as it always did.
        return remote_caller(token, local=local)
    return None


async def authenticate_token(token: str) -> Caller:
    """The caller behind a token, or AuthenticationFailed (401) / BillingUnavailable (503)."""
    local = await acaller_for_token(token)
    return _without_check(token, local) or vouched(token, _voucher.recent(token) or await _voucher.check(token))


def authenticate_token_sync(token: str) -> Caller:
    """`authenticate_token` from a sync view's thread; the voucher is asked on the
    event loop (async_to_sync) only when its answer is not cached here."""
    local = caller_for_token(token)
    return _without_check(token, local) or vouched(token, _voucher.recent(token) or async_to_sync(_voucher.check)(token))


def token_from_header(header: str) -> str:
    """The key from `Bearer <key>` (any scheme word, as the original accepted)."""
    parts = header.split()
    return parts[1] if len(parts) == 2 else ""


# --- DRF ------------------------------------------------------------------------------------

# Where ApiView leaves the outcome on Django's HttpRequest for ApiKeyAuthentication.
RESOLVED = "_queenbee_authenticated"


@dataclass(frozen=True)
class Resolved:
    """The outcome of authenticating one request: (caller, token), None (no header), or an error."""

    user_auth: tuple[Caller, str] | None
    error: Exception | None = None

    def result(self) -> tuple[Caller, str] | None:
        if self.error is not None:
            raise self.error
        return self.user_auth


async def resolve(request) -> Resolved:
    """Authenticate a Django request on the event loop; errors are kept for DRF to render."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return Resolved(None)
    token = token_from_header(header)
    if not token:
        return Resolved(None, exceptions.AuthenticationFailed(BAD_KEY))
    try:
        return Resolved((await authenticate_token(token), token))
    except Exception as exc:  # 401, 503, a database error: all rendered by DRF's handler
        return Resolved(None, exc)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        resolved = getattr(request._request, RESOLVED, None)
        if resolved is not None:  # done on the event loop by ApiView
            return resolved.result()
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        token = token_from_header(header)
        if not token:
            raise exceptions.AuthenticationFailed(BAD_KEY)
        return authenticate_token_sync(token), token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'
