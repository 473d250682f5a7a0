"""What the configured backends can do, decided here once, so no service asks
which mode it runs in (DESIGN.md, "Two ways to run, one code path").

Services read a fact about the capability they depend on, never the class or
vendor behind it. Each fact is worked out from the configured backend the first
time it is asked for and kept; a test that swaps a setting (pytest-django's
`settings`) has the facts worked out again.
"""

import functools
from dataclasses import dataclass

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.signals import setting_changed
from django.db import connections
from django.dispatch import receiver


@dataclass(frozen=True)
class Backends:
    own_sockets_only: bool
    """A job can only be dispatched to a socket this process holds: the in-memory
    channel layer does not reach other processes. One process serves the embedded
    default; the tests run several on one database, so a loop that picks a worker
    from the database (the fine-tune scheduler, the canaries) picks among its own."""

    serialised_writes: bool
    """The database lets one writer in at a time (SQLite): writing in parallel
    only queues on its lock, and one transaction for many rows costs one commit
    instead of one each. PostgreSQL takes writers in parallel, and a long
    transaction there holds its row locks for everyone."""

    local_cache: bool
    """The cache is this process's memory (LocMemCache): calling it costs no I/O,
    so async code calls it in place rather than from a thread."""


@functools.cache
def backends() -> Backends:
    return Backends(
        own_sockets_only=isinstance(get_channel_layer(), InMemoryChannelLayer),
        serialised_writes=connections["default"].vendor == "sqlite",
        local_cache=isinstance(caches["default"], LocMemCache),
    )


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs) -> None:
    if setting in ("CHANNEL_LAYERS", "DATABASES", "CACHES"):
        backends.cache_clear()
