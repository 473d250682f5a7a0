"""API-key authentication: `Authorization: Bearer <key>`."""

import hmac
import time
from dataclasses import dataclass, field

from django.conf import settings
from rest_framework import authentication, exceptions

from .models import ApiKey, hash_key

# A key's lookup is cached this long per process: a deactivated key stops
# working within a minute, and the hot path skips a query per request.
KEY_CACHE_SECONDS = 60.0
_cache: dict[str, tuple[float, "Caller | None"]] = {}


@dataclass(frozen=True)
class Caller:
    """Who is calling: an API key, or the bypass token."""

    api_key_id: int | None
    label: str
    is_authenticated: bool = True
    # With BILLING_URL: the caller's token, which the remote backend bills
    # (`bill_to_token`). Never printed.
    bill_to: str = field(default="", repr=False, compare=False)


BYPASS_CALLER = Caller(api_key_id=None, label="bypass")


def caller_for_token(token: str) -> Caller | None:
    if settings.BYPASS_TOKEN and hmac.compare_digest(token, settings.BYPASS_TOKEN):
        return BYPASS_CALLER
    digest = hash_key(token)
    now = time.monotonic()
    hit = _cache.get(digest)
    if hit and hit[0] > now:
        return hit[1]
    row = ApiKey.objects.filter(key_hash=digest, is_active=True).values_list("pk", "prefix").first()
    caller = Caller(api_key_id=row[0], label=row[1]) if row else None
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[digest] = (now + KEY_CACHE_SECONDS, caller)
    return caller


def remote_caller(token: str, *, local: Caller | None) -> Caller:
    """A caller the remote billing backend vouches for (or not: its `check` runs
    before any worker is claimed, and refuses unknown tokens)."""
    if local is not None:
        return Caller(api_key_id=local.api_key_id, label=local.label, bill_to=token)
    return Caller(api_key_id=None, label=f"remote-{hash_key(token)[:12]}", bill_to=token)


def token_from_header(header: str) -> str:
    """The key from `Bearer <key>` (any scheme word, as the original accepted)."""
    parts = header.split()
    return parts[1] if len(parts) == 2 else ""


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        token = token_from_header(header)
        caller = caller_for_token(token) if token else None
        if settings.BILLING_URL and token and caller is not BYPASS_CALLER:
            caller = remote_caller(token, local=caller)
        if caller is None:
            raise exceptions.AuthenticationFailed(
                "Incorrect API key provided. Send a valid key as 'Authorization: Bearer YOUR_KEY'."
            )
        return caller, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'
