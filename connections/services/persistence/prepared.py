"""Prepared statements for the fast paths on PostgreSQL.

A statement the fast paths run for every poll or every message costs PostgreSQL as much to
parse and plan as to run (the poll's start: 0.55 ms of the server's CPU planned, 0.1 ms
prepared). Django opens its psycopg connections with `prepare_threshold` None, under which
psycopg prepares nothing even when asked to (for connection poolers). `prepared_cursor`
raises it so high that psycopg still prepares nothing by itself — Django's own cursors bind
on the client and never are — while an explicit `execute(…, prepare=True)` prepares. psycopg
keeps a connection's 100 latest prepared statements. A PgBouncer in transaction mode needs
1.21 or newer with max_prepared_statements set.

One cursor is kept per connection (per thread), so its parameters' adapters stay cached. It binds on the server: parameters must be typed by their context (a column, a
comparison), not bare `SELECT %s`. psycopg's errors come out as Django's (IntegrityError
…), and the statements show in `connection.queries` / CaptureQueriesContext like the ORM's.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

try:  # psycopg 3: PostgreSQL
    from psycopg import Cursor
except ImportError:  # pragma: no cover - SQLite-only installs
    Cursor = None

# psycopg's prepare_threshold that leaves preparing to an explicit execute(…, prepare=True).
_ONLY_WHEN_ASKED = 2**31 - 1


def available(db) -> bool:
    """Whether `db` takes prepared statements (PostgreSQL through psycopg 3)."""
    return db.vendor == "postgresql" and Cursor is not None


def _kept_cursor(db) -> Any:
    """The server-side binding psycopg cursor kept on Django connection `db` (per thread) while
    its connection lasts — a new cursor would look up every parameter's adapter again — with
    the connection's prepare_threshold raised (see above)."""
    db.ensure_connection()
    kept = getattr(db, "_tm_prepared_cursor", None)
    if kept is not None and kept.connection is db.connection and not kept.closed:
        return kept
    if db.connection.prepare_threshold is None:
        db.connection.prepare_threshold = _ONLY_WHEN_ASKED
    db._tm_prepared_cursor = cursor = Cursor(db.connection)
    return cursor


@contextmanager
def prepared_cursor(db) -> Iterator[Any]:
    """The kept cursor of Django connection `db`, whose execute(…, prepare=True) prepares the
    statement (once per connection and statement text); psycopg's errors raised as Django's,
    statements logged where Django logs its own. Fetch what a statement returns before the next."""
    cursor = _kept_cursor(db)
    with db.wrap_database_errors:
        yield _Logged(cursor, db) if db.queries_logged else cursor


class _Logged:
    """The cursor, with each statement recorded where Django's debug cursor records its own."""

    def __init__(self, cursor, db) -> None:
        self._cursor, self._db = cursor, db

    def execute(self, sql: str, params=None, **kwargs) -> Any:
        started = time.monotonic()
        try:
            return self._cursor.execute(sql, params, **kwargs)
        finally:
            self._db.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)
