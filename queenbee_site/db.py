"""SQLite: switch the database file to WAL once per process.

WAL is stored in the file, so setting it on every new connection (as an
init_command would) only costs a write lock each time.
"""

from django.db.backends.signals import connection_created

_done: set[str] = set()


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
