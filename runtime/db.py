"""Database helpers: SQLite's WAL switch, and the threads the hot path queries on.

WAL is stored in the file, so setting it on every new connection (as an
init_command would) only costs a write lock each time.

`on_db_threads` runs a sync database function on a small pool of long-lived
threads shared by the whole process. Django's `database_sync_to_async` would run
it on the request's own thread instead (a new thread per request, and so a new
database connection per request: opening a SQLite connection and starting the
thread were ~15% of a request's CPU, bench/RESULTS.md). Each pool thread keeps
its connection between calls (CONN_MAX_AGE; with PostgreSQL it goes back to
psycopg's pool after each call). The pool has several threads, not one: a
database that hangs (PostgreSQL cut off) holds up only the calls that are
waiting for it, each until its connection timeout, and the process recovers
when the database does. Use it for short functions that own their transaction.
"""

import functools
from concurrent.futures import ThreadPoolExecutor

from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.db.backends.signals import connection_created

_done: set[str] = set()
_pool: ThreadPoolExecutor | None = None


def enable_wal(sender, connection, **kwargs) -> None:
    if connection.vendor != "sqlite":
        return
    name = str(connection.settings_dict["NAME"])
    if name in _done or name == ":memory:" or "mode=memory" in name:
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL;")
    _done.add(name)


def install() -> None:
    connection_created.connect(enable_wal, dispatch_uid="queenbee-sqlite-wal")


def db_threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=settings.DB_THREADS, thread_name_prefix="queenbee-db")
    return _pool


def on_db_threads(func):
    """`func` as a coroutine function that runs on the shared database threads
    (closing connections that are too old or broken before and after, as
    Channels' `database_sync_to_async` does). The pool starts on first use."""
    wrapped = None

    @functools.wraps(func)
    async def call(*args, **kwargs):
        nonlocal wrapped
        if wrapped is None:
            wrapped = DatabaseSyncToAsync(func, thread_sensitive=False, executor=db_threads())
        return await wrapped(*args, **kwargs)

    return call


def storable(value):
    """`value` with every NUL character replaced by U+FFFD, in all its strings (dict
    keys too). PostgreSQL stores no NUL, in text or in JSON, and a worker's text may
    hold one (the tiny random model writes them; a hostile worker may): the row
    would be refused and the answer's record lost."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value
