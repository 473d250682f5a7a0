"""Querysets compiled once and run again as plain SQL.

Building and compiling a queryset costs about ten times what SQLite takes to run
the statement it becomes (1.3 ms against 0.13 ms for the claim's candidate query
on the bench machine, bench/RESULTS.md). The few reads every request makes are
compiled once per shape and then executed directly: still written with the ORM
(one source of truth for each filter), still returning what `values_list` would,
through the compiler's own converters.

    rows = compiled.run(("free", need), lambda now, pk: Connection.objects.filter(...), now=now, pk=pk)

`build` gets a stand-in for each keyword argument (a datetime, int or str that no
real value equals); the stand-ins' places in the compiled parameters are found
once, and each run puts the real values there. `key` names what else shapes the
SQL (the values `build` reads from its closure); it must not change for the same key.
"""

import itertools
import threading
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import QuerySet

# Shapes kept per process.
MAX_SHAPES = 512

_serial = itertools.count(1)


def _stand_in(value: Any) -> Any:
    n = next(_serial)
    if isinstance(value, datetime):
        return datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC) + timedelta(microseconds=n)
    if isinstance(value, bool):
        raise TypeError("a bool has no stand-in: make it part of the key")
    if isinstance(value, int):
        return -2_000_000_000 - n  # in range of a 32-bit column: Django drops out-of-range lookups
    if isinstance(value, str):
        return f"\x00stand-in {n}\x00"
    raise TypeError(f"no stand-in for {type(value).__name__}")


class CompiledQuery:
    def __init__(self, build: Callable[..., QuerySet], args: dict[str, Any]):
        stand_ins = {name: _stand_in(value) for name, value in args.items()}
        queryset = build(**stand_ins)
        self.alias = queryset.db
        connection = connections[self.alias]
        self.compiler = queryset.query.get_compiler(connection=connection)
        self.sql, params = self.compiler.as_sql()
        self.params = list(params)
        self.adapt = connection.ops.adapt_datetimefield_value
        # (position, argument name, whether the backend wants it adapted)
        self.slots: list[tuple[int, str, bool]] = []
        for name, stand_in in stand_ins.items():
            adapted = self.adapt(stand_in) if isinstance(stand_in, datetime) else stand_in
            found = [i for i, p in enumerate(self.params) if p is stand_in or p == adapted]
            if not found:
                raise ValueError(f"argument {name!r} does not appear in the query's parameters")
            self.slots += [(i, name, self.params[i] is not stand_in) for i in found]

    def rows(self, args: dict[str, Any]) -> list[tuple]:
        params = self.params.copy()
        for i, name, adapt in self.slots:
            value = args[name]
            params[i] = self.adapt(value) if adapt and isinstance(value, datetime) else value
        with connections[self.alias].cursor() as cursor:
            cursor.execute(self.sql, params)
            fetched = cursor.fetchall()
        return list(self.compiler.results_iter(results=[fetched], tuple_expected=True))


_cache: dict[Hashable, CompiledQuery] = {}
_lock = threading.Lock()


def run(key: Hashable, build: Callable[..., QuerySet], **args: Any) -> list[tuple[Any, ...]]:
    """The rows of `build(**args)`, compiled once per `key` (and database vendor)."""
    full_key = (connections[DEFAULT_DB_ALIAS].vendor, key, tuple(args))
    query = _cache.get(full_key)
    if query is None:
        try:
            query = CompiledQuery(build, args)
        except EmptyResultSet:
            # Django found the filter can match nothing (a value out of its
            # column's range) and has no SQL for it: the ORM answers [] itself.
            return list(build(**args))
        with _lock:
            if len(_cache) >= MAX_SHAPES:
                _cache.clear()
            _cache[full_key] = query
    return query.rows(args)


class CompiledInsert:
    """One model's INSERT, written once: what `QuerySet.create` sends, without
    building and compiling an insert query for every row."""

    def __init__(self, model, connection):
        meta = model._meta
        self.fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field and not f.generated]
        # What the ORM's insert does beyond this (reads back database defaults or
        # generated values, inherited tables) is refused rather than half done.
        unsupported = [f.name for f in self.fields if f.has_db_default()] + [p.name for p in meta.parents]
        if unsupported or len(meta.local_concrete_fields) != len(meta.concrete_fields):
            raise TypeError(f"{model.__name__}: compiled inserts do not support {unsupported or 'inherited fields'}")
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in self.fields)
        self.sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(self.fields))})"
        self.returning = meta.auto_field is not None and connection.features.can_return_columns_from_insert
        if self.returning:
            self.sql += f" RETURNING {quote(meta.auto_field.column)}"

    def save(self, obj, connection) -> None:
        if obj.pk is not None:
            raise ValueError("a compiled insert makes new rows: its primary key comes from the database")
        # pre_save as the ORM calls it on an insert: auto_now(_add) fields get their time here.
        values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in self.fields]
        # As the ORM does: a failed insert inside atomic() marks it for rollback.
        with transaction.mark_for_rollback_on_error(connection.alias), connection.cursor() as cursor:
            cursor.execute(self.sql, values)
            pk = cursor.fetchone()[0] if self.returning else connection.ops.last_insert_id(cursor, obj._meta.db_table, obj._meta.pk.column)
        if obj._meta.auto_field is not None:
            obj.pk = pk
        obj._state.adding = False
        obj._state.db = connection.alias


_inserts: dict[tuple, CompiledInsert] = {}


def insert(obj, using: str = DEFAULT_DB_ALIAS):
    """Insert a new model instance as `QuerySet.create` would (no signals are sent:
    use it only for models nobody listens to) and return it, its pk set."""
    connection = connections[using]
    key = (connection.vendor, type(obj))
    compiled_insert = _inserts.get(key)
    if compiled_insert is None:
        compiled_insert = _inserts[key] = CompiledInsert(type(obj), connection)
    compiled_insert.save(obj, connection)
    return obj
