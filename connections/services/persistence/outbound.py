"""The outbox's fast persistence paths, each beside its plain ORM version (tests/persistence
compares the rows both write). The outbox's domain code (services/outbound/) calls these by
intent; nothing else there writes SQL by hand.

- `write_outcome`: one message's outcome as ONE conditional UPDATE, a server-side prepared
  statement on PostgreSQL with psycopg 3 (it runs once per message; the ORM's query compiler
  would compete with sending for the CPU).
- `write_outcomes`: several messages' outcomes as ONE statement on PostgreSQL (one
  UPDATE … FROM (VALUES …) per shape of outcome, joined as data-modifying CTEs), committed
  asynchronously, a prepared statement (the session's shapes recur: the last message's outcome
  and the next one's "DATA started"); it is what each message's "DATA started" barrier costs.
- `load_mime`: the MIME bytes of claimed messages, in PostgreSQL's binary format (the text
  format doubles them as hex, to be encoded by the server and decoded by the sender).
- `insert_messages`: many outbox rows by COPY (ids taken from the sequence first).

Every outcome write is conditional: it lands only while the row is still ours (`sending`, the
same `claimed_at`): an operator or crash recovery may have taken the message meanwhile.
"""
from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, Callable, Sequence

from django.db import connections, transaction

from ...models import OutboxMessage, OutboxStatus
from . import prepared
from .commits import ASYNC_COMMIT
from .prepared import prepared_cursor

# (message id, its claimed_at, {field name: value}): one outcome to write.
OutcomeRow = tuple[int, datetime, dict[str, Any]]

# The outcome writes commit without waiting for the WAL flush (ASYNC_COMMIT in the
# statement): still visible to every other session at once (a killed worker loses nothing,
# recovery sees them), only a crash of the PostgreSQL server itself can lose the last
# fraction of a second of them — those messages then look as if the worker had died just
# before (docs/outbound.md, crash recovery). A transaction-local setting (like SET LOCAL), so
# it costs no extra round trip and the connection's other work (claims) stays synchronous.
_UPDATE_SQL: dict[tuple, str] = {}
_BULK_SQL: dict[tuple, tuple[str, list[tuple]]] = {}
_PREPARERS: dict[tuple, Callable[[Any, Any], Any]] = {}

# Rows per INSERT of the ORM version: big enough to amortise the round trip, small enough for the MIME bytes.
BATCH_SIZE = 500
# From this many rows on, PostgreSQL gets them by COPY (3-4x the rows per second of INSERT).
COPY_MIN = 20


def _fast(db) -> bool:
    return prepared.available(db)


# --- one outcome -----------------------------------------------------------------------------

def write_outcome(*, message_id: int, claimed_at: datetime, values: dict[str, Any]) -> bool:
    """`write_outcome_orm` as one hand-built statement (prepared on PostgreSQL outside a transaction)."""
    db = transaction.get_connection()
    sql = _update_sql(db, tuple(values))
    params = _prep(db, values) + [message_id, OutboxStatus.SENDING.value, _prep_claimed(db, claimed_at)]
    if _fast(db) and not db.in_atomic_block:
        with prepared_cursor(db) as cursor:
            cursor.execute(sql, params, prepare=True)
            return bool(cursor.rowcount)
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return bool(cursor.rowcount)


def write_outcome_orm(*, message_id: int, claimed_at: datetime, values: dict[str, Any]) -> bool:
    """The message's fields set to `values`, only while it is still ours; True when written."""
    return bool(OutboxMessage.objects.filter(pk=message_id, status=OutboxStatus.SENDING, claimed_at=claimed_at)
                .update(**values))


def _update_sql(db, names: tuple[str, ...]) -> str:
    sql = _UPDATE_SQL.get((db.vendor, names))
    if sql is None:
        meta, quote = OutboxMessage._meta, db.ops.quote_name
        sets = ", ".join(f"{quote(meta.get_field(name).column)} = %s" for name in names)
        sql = (f"UPDATE {quote(meta.db_table)} SET {sets} WHERE {quote(meta.pk.column)} = %s "
               f"AND {quote(meta.get_field('status').column)} = %s "
               f"AND {quote(meta.get_field('claimed_at').column)} = %s")
        _UPDATE_SQL[(db.vendor, names)] = sql
    return sql


def _prep(db, values: dict[str, Any]) -> list[Any]:
    return [_preparer(db, name)(value, db) for name, value in values.items()]


def _prep_claimed(db, claimed_at: datetime) -> Any:
    return _preparer(db, "claimed_at")(claimed_at, db)


def _preparer(db, name: str) -> Callable[[Any, Any], Any]:
    """`prepare(value, db)`: the field's get_db_prep_save; on PostgreSQL for text, integers and
    datetimes the value itself when it is already what the field would store (a str, an int,
    an aware datetime or None): these run for every outcome, and Django's checks cost more
    than the write."""
    key = (db.vendor, name)
    prepare = _PREPARERS.get(key)
    if prepare is None:
        field = OutboxMessage._meta.get_field(name)
        slow = functools.partial(_field_prep, field)
        kind = field.get_internal_type()
        if db.vendor != "postgresql":
            prepare = slow
        elif kind in ("CharField", "TextField"):
            prepare = functools.partial(_same_if, str, slow)
        elif kind in ("PositiveIntegerField", "IntegerField", "SmallIntegerField", "PositiveBigIntegerField",
                      "BigIntegerField", "BigAutoField", "AutoField"):
            prepare = functools.partial(_same_if, int, slow)
        elif kind == "DateTimeField":
            prepare = functools.partial(_same_if_aware, slow)
        else:
            prepare = slow
        _PREPARERS[key] = prepare
    return prepare


def _field_prep(field, value: Any, db) -> Any:
    return field.get_db_prep_save(value, connection=db)


def _same_if(kind: type, slow: Callable[[Any, Any], Any], value: Any, db) -> Any:
    return value if value is None or type(value) is kind else slow(value, db)


def _same_if_aware(slow: Callable[[Any, Any], Any], value: Any, db) -> Any:
    # Django passes an aware datetime to psycopg unchanged (and warns about naive ones).
    return value if value is None or (type(value) is datetime and value.utcoffset() is not None) else slow(value, db)


# --- several outcomes ------------------------------------------------------------------------

def write_outcomes(*, rows: Sequence[OutcomeRow]) -> set[int]:
    """`write_outcomes_orm` as ONE statement on PostgreSQL, committed asynchronously: atomic by
    itself in autocommit (one round trip instead of BEGIN, one per shape, COMMIT), or part of
    the caller's transaction. The rows must be of distinct messages."""
    db = transaction.get_connection()
    if not rows:
        return set()
    if not _fast(db):
        return {message_id for message_id, claimed_at, values in rows
                if write_outcome(message_id=message_id, claimed_at=claimed_at, values=values)}
    shapes: dict[tuple[str, ...], list[OutcomeRow]] = {}
    for row in rows:
        shapes.setdefault(tuple(row[2]), []).append(row)
    key = (db.vendor, tuple((names, len(group)) for names, group in shapes.items()))
    statement = _BULK_SQL.get(key)
    if statement is None:  # the session's few shapes recur: built once each
        statement = _BULK_SQL[key] = _bulk_statement(db, key[1])
    sql, preparers = statement
    params: list[Any] = []
    sending = OutboxStatus.SENDING.value
    for (names, group), (prepare_claimed, prepare) in zip(shapes.items(), preparers):
        for message_id, claimed_at, values in group:
            params.append(message_id)
            params.append(prepare_claimed(claimed_at, db))
            params.extend([p(values[name], db) for p, name in zip(prepare, names)])
        params.append(sending)
    # Prepared: parsing and planning this statement for every message cost PostgreSQL about
    # as much as running it.
    with prepared_cursor(db) as cursor:
        cursor.execute(sql, params, prepare=True)
        return set(cursor.fetchone()[1])


def write_outcomes_orm(*, rows: Sequence[OutcomeRow]) -> set[int]:
    """Each row by `write_outcome_orm`, in one transaction; the ids written."""
    with transaction.atomic():
        return {message_id for message_id, claimed_at, values in rows
                if write_outcome_orm(message_id=message_id, claimed_at=claimed_at, values=values)}


def _bulk_statement(db, shapes: tuple[tuple[tuple[str, ...], int], ...]) -> tuple[str, list[tuple]]:
    """PostgreSQL: for each (columns, number of rows) one UPDATE … FROM (VALUES …) RETURNING id,
    joined as data-modifying CTEs; one row back: `synchronous_commit` off for this statement's
    transaction, and the ids written. With each shape's value preparers."""
    parts = [_bulk_sql(db, names, count) for names, count in shapes]
    sql = ("WITH " + ", ".join(f"u{i} AS ({part})" for i, part in enumerate(parts))
           + f" SELECT {ASYNC_COMMIT}, ARRAY("
           + " UNION ALL ".join(f"SELECT * FROM u{i}" for i in range(len(parts))) + ")")
    preparers = [(_preparer(db, "claimed_at"), [_preparer(db, name) for name in names]) for names, _ in shapes]
    return sql, preparers


def _bulk_sql(db, names: tuple[str, ...], count: int) -> str:
    """One UPDATE … FROM (VALUES …) RETURNING id for `count` rows with the same columns."""
    meta = OutboxMessage._meta
    fields = [meta.get_field(name) for name in names]
    quote = db.ops.quote_name
    casts = [meta.pk.rel_db_type(db), meta.get_field("claimed_at").db_type(db)] + [f.db_type(db) for f in fields]
    row = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
    columns = ", ".join(["v_id", "v_claimed"] + [f"v_{i}" for i in range(len(fields))])
    sets = ", ".join(f"{quote(f.column)} = v.v_{i}" for i, f in enumerate(fields))
    pk, status, claimed = (quote(meta.pk.column), quote(meta.get_field("status").column),
                           quote(meta.get_field("claimed_at").column))
    return (f"UPDATE {quote(meta.db_table)} AS t SET {sets} FROM (VALUES {', '.join([row] * count)}) "
            f"AS v({columns}) WHERE t.{pk} = v.v_id AND t.{status} = %s AND t.{claimed} = v.v_claimed "
            f"RETURNING t.{pk}")


# --- MIME of claimed messages ----------------------------------------------------------------

def load_mime(*, ids: Sequence[int]) -> dict[int, bytes]:
    """`load_mime_orm` as one prepared statement with binary results on PostgreSQL."""
    db = transaction.get_connection()
    if not _fast(db):
        return load_mime_orm(ids=ids)
    meta, quote = OutboxMessage._meta, db.ops.quote_name
    sql = (f"SELECT {quote(meta.pk.column)}, {quote(meta.get_field('mime').column)} FROM {quote(meta.db_table)} "
           f"WHERE {quote(meta.pk.column)} = ANY(%s)")
    with prepared_cursor(db) as cursor:
        cursor.execute(sql, [list(ids)], prepare=True, binary=True)
        return {pk: bytes(mime) for pk, mime in cursor.fetchall()}


def load_mime_orm(*, ids: Sequence[int]) -> dict[int, bytes]:
    """{id: MIME bytes} of the messages with these ids (missing ids are left out)."""
    return {pk: bytes(mime) for pk, mime in OutboxMessage.objects.filter(pk__in=list(ids)).values_list("pk", "mime")}


# --- new messages ----------------------------------------------------------------------------

def insert_messages(rows: list[OutboxMessage]) -> list[OutboxMessage]:
    """`insert_messages_orm` by COPY on PostgreSQL from COPY_MIN rows on (ids taken from the
    table's sequence first, in one query). Inside the caller's transaction."""
    db = connections[OutboxMessage.objects.db]
    if db.vendor != "postgresql" or not hasattr(db.connection, "pgconn") or len(rows) < COPY_MIN:
        return insert_messages_orm(rows)
    meta = OutboxMessage._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    quote = db.ops.quote_name
    columns = ", ".join([quote(meta.pk.column)] + [quote(f.column) for f in fields])
    with db.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                       [meta.db_table, meta.pk.column, len(rows)])
        ids = [row[0] for row in cursor.fetchall()]
        with cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN") as copy:
            for pk, row in zip(ids, rows):
                copy.write_row([pk] + [f.get_db_prep_save(f.pre_save(row, True), connection=db) for f in fields])
    for pk, row in zip(ids, rows):
        row.pk = pk
        row._state.adding = False
        row._state.db = db.alias
    return rows


def insert_messages_orm(rows: list[OutboxMessage]) -> list[OutboxMessage]:
    """Insert the unsaved rows (inside the caller's transaction); sets their primary keys."""
    return OutboxMessage.objects.bulk_create(rows, batch_size=BATCH_SIZE)
