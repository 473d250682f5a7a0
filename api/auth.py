"""API-key authentication: `Authorization: Bearer <key>`, on every authenticated endpoint.

A token is the bypass token, one of our API keys (an `ApiKey` row), or, with
BILLING_URL, a token the remote billing backend vouches for through its `check`
(cached briefly, see `billing.remote.check`). A token nobody knows is a 401 and a
billing backend that does not answer is a 503, whatever the endpoint.

Where it runs: async views inherit `api.api_view.ApiView`, which resolves the
caller on the event loop (`resolve`) before adrf's thread-bound `initial()`; the
authenticator then only hands the result over. A key seen within
KEY_CACHE_SECONDS and a check still cached cost no thread hop and no I/O. Sync
views (/v1/files) authenticate in the thread Django runs them in, as DRF does.

This module must not import DRF or adrf views: DRF imports it while defining its
own APIView (DEFAULT_AUTHENTICATION_CLASSES).
"""

import hmac
import logging
from dataclasses import dataclass, field

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.conf import settings
from rest_framework import authentication, exceptions

from billing import remote
from runtime.caching import Expiring

from .errors import BillingUnavailable
from api.models import ApiKey
from api.hashing import hash_secret

log = logging.getLogger(__name__)

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
    # With BILLING_URL: the caller's token, which the remote backend bills
    # (`bill_to_token`). Never printed.
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


# --- Remote billing -----------------------------------------------------------------------


async def billing_check(token: str) -> remote.CheckResult:
    """The remote backend's cached `check` of a token; 503 when it does not answer."""
    try:
        return await remote.check(token)
    except remote.BillingError as exc:
        log.warning("billing check failed: %s", exc)
        raise BillingUnavailable("The billing service is unavailable; retry shortly.") from None


def remote_caller(token: str, *, local: Caller | None) -> Caller:
    """A caller whose requests the remote backend bills (`bill_to`)."""
    if local is not None:
        return Caller(api_key_id=local.api_key_id, label=local.label, bill_to=token)
    return Caller(api_key_id=None, label=f"remote-{hash_secret(token)[:12]}", bill_to=token)


def vouched(token: str, result: remote.CheckResult) -> Caller:
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
    if not settings.BILLING_URL:
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
    return _without_check(token, local) or vouched(token, remote.recent_check(token) or await billing_check(token))


def authenticate_token_sync(token: str) -> Caller:
    """`authenticate_token` from a sync view's thread; the backend is asked on the
    event loop (async_to_sync) only when its answer is not cached here."""
    local = caller_for_token(token)
    return _without_check(token, local) or vouched(token, remote.recent_check(token) or async_to_sync(billing_check)(token))


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
