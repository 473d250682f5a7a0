"""The caller's IP address, behind proxies we trust and only those.

`X-Forwarded-For` is a list anyone can write to: a client sends its own, each
proxy appends the address it saw. So the header is read from the right, and only
while the address we are looking at is one of TRUSTED_PROXIES; the first one that
is not is the client. With no trusted proxies the header is ignored entirely,
so a worker cannot dodge the per-address limits by inventing a header.
"""

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """`10.0.0.1`, `10.0.0.0/8`, `::1`: each becomes a network (a bare address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def resolve(peer: str, forwarded_for: str, trusted: tuple[Network, ...]) -> str:
    """The client's address, given the socket's peer and the X-Forwarded-For header."""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    address = peer
    while hops and _is_trusted(address, trusted):
        address = hops.pop()
    # A garbled entry is not an address; the last proxy that wrote it is the best we know.
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return peer


@lru_cache(maxsize=1)
def _trusted(values: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(values)


def trusted_proxies() -> tuple[Network, ...]:
    return _trusted(tuple(settings.TRUSTED_PROXIES))


def from_scope(scope: dict) -> str:
    """For websockets (and any ASGI scope)."""
    client = scope.get("client") or ("", 0)
    forwarded = ",".join(v.decode("latin1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for")
    return resolve(str(client[0] or ""), forwarded, trusted_proxies())


def from_request(request) -> str:
    """For Django requests."""
    return resolve(request.META.get("REMOTE_ADDR", ""), request.META.get("HTTP_X_FORWARDED_FOR", ""), trusted_proxies())
