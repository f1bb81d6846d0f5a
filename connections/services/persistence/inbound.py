"""Inbound writes, each named by intent, each a fast PostgreSQL path beside its plain ORM version.

- `load_for_poll`: the connection, its tenant, its credential row and whether mails await
  post-processing: one SELECT written once per process / the ORM's two queries;
- `take_lock`: one INSERT … ON CONFLICT DO UPDATE (take an expired lock over) / create, else
  a conditional UPDATE;
- `open_run_and_lock`, `finish_run`: the poll's bookkeeping as one statement (data-modifying
  CTEs, one round trip, asynchronous commit) / one short ORM transaction;
- `insert_messages`: a batch of StoredMessage and Attachment rows with binary COPY / bulk_create;
- `mark_post_processed`: one UPDATE with an array parameter / the ORM's IN list;
- `stored_server_keys`: which mails are stored already, one SELECT with an array parameter /
  the ORM's IN lists.

The fast path runs on PostgreSQL; the ORM one elsewhere (SQLite), or inside `plain_orm()`
(tests compare the rows of both). Both write the same rows. Which one runs depends on the
database and that selection only, never on the caller's transaction state: the one-statement
bookkeeping must be its own transaction, so it refuses to run inside one.

Asynchronous commit is used for poll bookkeeping only (history row, lock, outcome): losing it
in a database crash is harmless — a lock then expires, a RUNNING row is closed by pruning,
the dispatcher's claim re-polls — and any later stored-mail commit (always synchronous)
flushes it anyway. Never for mail rows.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Iterator

from django.db import IntegrityError, connections, models, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from ...models import Attachment, InboundConnection, MailboxLock, PollRun, StoredMessage, Tenant, UserCredential
from . import prepared
from .commits import ASYNC_COMMIT
from .prepared import prepared_cursor

_plain: ContextVar[bool] = ContextVar("inbound_plain_orm", default=False)

# In autocommit, one statement is its own transaction: set_config(..., true) in it covers
# exactly that statement's commit.
_ASYNC_COMMIT = f"SELECT {ASYNC_COMMIT}"


@contextmanager
def plain_orm() -> Iterator[None]:
    """Within this block (this thread), every function here takes its plain ORM path."""
    token = _plain.set(True)
    try:
        yield
    finally:
        _plain.reset(token)


def fast() -> bool:
    """Whether the fast paths are taken: PostgreSQL, outside `plain_orm()`."""
    return prepared.available(transaction.get_connection()) and not _plain.get()


# --------------------------------------------------------------------------- locks and poll bookkeeping


@dataclass
class PollStart:
    """What a poll starts from, read in one go."""

    connection: InboundConnection  # with its tenant, and `has_pending`: stored mails whose
    # post-processing on the server is not done (the index message_pending_post_idx answers it)
    credential: UserCredential | None  # the row its Credential Name names; None: there is none


def load_for_poll(*, connection_id: int) -> PollStart:
    """The connection a poll starts from and its credential row. Raises
    InboundConnection.DoesNotExist.

    Fast path: one SELECT written once per process, rows turned into instances with the
    fields' own converters (the encrypted ones decrypt as in the ORM) — the ORM compiles
    its queries anew on every call, which cost an empty poll more CPU than the statements."""
    if not fast():
        pending = StoredMessage.objects.filter(connection=OuterRef("pk"), post_processed_at__isnull=True)
        connection = (InboundConnection.objects.select_related("tenant").annotate(has_pending=Exists(pending))
                      .get(pk=connection_id))
        return PollStart(connection, _credential_row(connection))
    db = transaction.get_connection()
    sql, read_connection, read_tenant, read_credential = _poll_load_statement(db.alias)
    with prepared_cursor(db) as cursor:
        cursor.execute(sql, [connection_id], prepare=True)
        row = cursor.fetchone()
    if row is None:
        raise InboundConnection.DoesNotExist(f"InboundConnection {connection_id} does not exist")
    connection, rest = read_connection(db, row)
    tenant, rest = read_tenant(db, rest)
    InboundConnection.tenant.field.set_cached_value(connection, tenant)
    credential, rest = read_credential(db, rest)
    connection.has_pending = rest[0]
    name = connection.credential_name or ""
    if name.strip() != name.strip(" "):  # other white space around the name than SQL's btrim strips
        credential = _credential_row(connection)
    return PollStart(connection, credential)


def _credential_row(connection: InboundConnection) -> UserCredential | None:
    name = (connection.credential_name or "").strip()
    return UserCredential.objects.filter(tenant_id=connection.tenant_id, name=name).first() if name else None


@lru_cache(maxsize=4)
def _poll_load_statement(alias: str):
    db = connections[alias]
    q = db.ops.quote_name
    c_read, c_columns = _row_reader(db, InboundConnection, "c")
    t_read, t_columns = _row_reader(db, Tenant, "t")
    # Not the entered password (a poll uses the deployed one): one decryption less per poll;
    # reading it from this row would load it then (a deferred field).
    u_read, u_columns = _row_reader(db, UserCredential, "u", skip=("password",))
    messages = q(StoredMessage._meta.db_table)
    sql = (f"SELECT {c_columns}, {t_columns}, {u_columns}, EXISTS(SELECT 1 FROM {messages} m "
           f"WHERE m.connection_id = c.id AND m.post_processed_at IS NULL) "
           f"FROM {q(InboundConnection._meta.db_table)} c JOIN {q(Tenant._meta.db_table)} t ON t.id = c.tenant_id "
           f"LEFT JOIN {q(UserCredential._meta.db_table)} u ON u.tenant_id = c.tenant_id "
           f"AND u.name = btrim(c.credential_name) AND btrim(c.credential_name) <> '' WHERE c.id = %s")
    return sql, c_read, t_read, u_read


def _row_reader(db, model, alias: str, skip: tuple[str, ...] = ()):
    """(read, columns): `columns` selects the model's concrete fields but `skip` (deferred in
    the instance) from table alias `alias`;
    `read(db, values)` returns (an instance as the ORM builds it — each field's database
    converters applied — or None for a row of NULLs that an outer join did not find, and the
    values after this model's)."""
    fields = [f for f in model._meta.concrete_fields if f.attname not in skip]
    columns = ", ".join(f"{alias}.{db.ops.quote_name(f.column)}" for f in fields)
    names = [f.attname for f in fields]
    converters = []
    for i, f in enumerate(fields):
        col = f.get_col(alias)
        found = db.ops.get_db_converters(col) + col.get_db_converters(db)
        if found:
            converters.append((i, col, found))
    n = len(fields)

    pk = fields.index(model._meta.pk)

    def read(db, values):
        if values[pk] is None:
            return None, values[n:]
        own = list(values[:n])
        for i, col, found in converters:
            for convert in found:
                own[i] = convert(own[i], col, db)
        return model.from_db(db.alias, names, own), values[n:]

    return read, columns


def take_lock(*, lock: MailboxLock) -> tuple[str | None, bool]:
    """Write the new lock row, or take over an expired one with its key. Returns (its token,
    taken over from a holder that died), or (None, False) when someone holds a live lock."""
    if fast():
        sql, params = _lock_sql(lock)
        with prepared_cursor(transaction.get_connection()) as cursor:
            cursor.execute(sql, params, prepare=True)
            row = cursor.fetchone()
        return (lock.token, not row[0]) if row else (None, False)
    try:
        with transaction.atomic():
            lock.save(force_insert=True)
        return lock.token, False
    except IntegrityError:
        pass
    # Held: take it over only if it has expired (its holder died or hung). The condition in
    # the UPDATE makes the take-over atomic: of two pollers, one wins.
    with transaction.atomic():
        taken = MailboxLock.objects.filter(key=lock.key, expires_at__lte=lock.acquired_at).update(
            token=lock.token, acquired_at=lock.acquired_at, expires_at=lock.expires_at, holder=lock.holder
        )
    return (lock.token, True) if taken else (None, False)


def open_run_and_lock(*, run: PollRun, lock: MailboxLock) -> tuple[str | None, bool]:
    """Insert the RUNNING history row `run` and take `lock`, committed together. Returns what
    take_lock returns."""
    if not fast():
        with transaction.atomic():
            run.save(force_insert=True)
            return take_lock(lock=lock)
    _require_autocommit()
    # One round trip, one (asynchronous) commit instead of BEGIN, SET, two INSERTs and COMMIT
    # — most of an empty poll's bookkeeping cost.
    lock_sql, lock_params = _lock_sql(lock)
    run_sql, run_params = _insert_sql(run)
    sql = (f"WITH lk AS ({lock_sql}), run AS ({run_sql}) "
           f"SELECT (SELECT id FROM run), (SELECT fresh FROM lk), ({_ASYNC_COMMIT})")
    db = transaction.get_connection()
    with prepared_cursor(db) as cursor:
        cursor.execute(sql, [*lock_params, *run_params], prepare=True)
        run_id, fresh, _ = cursor.fetchone()
    run.pk = run_id
    run._state.adding = False
    run._state.db = db.alias
    return (None, False) if fresh is None else (lock.token, not fresh)


def finish_run(*, run_id: int | None, new_run: PollRun | None, outcome: dict, connection_id: int,
               connection_update: dict, release: tuple[str, str] | None, counters: tuple[str, list]) -> int:
    """In one commit: release the lock (`release` = (key, token)), write the outcome into the
    history row `run_id` (or insert `new_run` whole), update the connection, add the metric
    `counters` (sql, params). Returns the history row's id."""
    if not fast():
        with transaction.atomic():
            if release is not None:
                MailboxLock.objects.filter(key=release[0], token=release[1]).delete()
            if new_run is not None:
                new_run.save(force_insert=True)
                run_id = new_run.pk
            else:
                PollRun.objects.filter(pk=run_id).update(**outcome)
            InboundConnection.objects.filter(pk=connection_id).update(**connection_update)
            with transaction.get_connection().cursor() as cursor:
                cursor.execute(*counters)
        return run_id  # type: ignore[return-value]
    _require_autocommit()
    db = transaction.get_connection()
    parts, params = [], []
    if release is not None:
        table = db.ops.quote_name(MailboxLock._meta.db_table)
        parts.append(f"rel AS (DELETE FROM {table} WHERE key = %s AND token = %s)")
        params += list(release)
    if new_run is not None:
        run_sql, run_params = _insert_sql(new_run)
    else:
        run_sql, run_params = _update_sql(PollRun, run_id, outcome)
        run_sql += " RETURNING " + db.ops.quote_name(PollRun._meta.pk.column)
    parts.append(f"run AS ({run_sql})")
    params += run_params
    conn_sql, conn_params = _update_sql(InboundConnection, connection_id, connection_update)
    parts.append(f"conn AS ({conn_sql})")
    params += conn_params
    parts.append(f"metrics AS ({counters[0]})")
    params += counters[1]
    with prepared_cursor(db) as cursor:
        cursor.execute(f"WITH {', '.join(parts)} SELECT (SELECT id FROM run), ({_ASYNC_COMMIT})", params, prepare=True)
        return cursor.fetchone()[0]


def _require_autocommit() -> None:
    """The one-statement bookkeeping commits asynchronously: inside a caller's transaction
    that would cover the caller's commit too (mail rows are always committed synchronously)."""
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("poll bookkeeping must run outside transaction.atomic() (poll() refuses to run inside one)")


def _lock_sql(lock: MailboxLock) -> tuple[str, list]:
    """The one statement that takes the lock or takes an expired one over, usable inside a
    bigger statement (a CTE). It returns one row `fresh` (true: new lock, false: taken over)
    when the lock is ours, no row when it is held."""
    table = transaction.get_connection().ops.quote_name(MailboxLock._meta.db_table)
    sql = (
        f"INSERT INTO {table} (key, token, acquired_at, expires_at, holder) VALUES (%s, %s, %s, %s, %s) "
        f"ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token, acquired_at = EXCLUDED.acquired_at, "
        f"expires_at = EXCLUDED.expires_at, holder = EXCLUDED.holder WHERE {table}.expires_at <= %s "
        f"RETURNING (xmax = 0) AS fresh"
    )
    return sql, [lock.key, lock.token, lock.acquired_at, lock.expires_at, lock.holder, lock.acquired_at]


def _insert_sql(obj) -> tuple[str, list]:
    """INSERT … RETURNING id of an unsaved model instance (all concrete fields but the pk)."""
    db = transaction.get_connection()
    fields = [f for f in obj._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(db.ops.quote_name(f.column) for f in fields)
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection=db) for f in fields]
    placeholders = ", ".join(["%s"] * len(fields))
    table = db.ops.quote_name(obj._meta.db_table)
    return f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) RETURNING {db.ops.quote_name(obj._meta.pk.column)}", params


_UPDATES: dict[tuple, str] = {}


def _update_sql(model, pk: int, values: dict) -> tuple[str, list]:
    """UPDATE … WHERE pk = … of plain values, each prepared by its field as the ORM prepares it;
    the statement's text is made once per model and set of columns (not compiled per call)."""
    db = transaction.get_connection()
    opts = model._meta
    key = (db.alias, model, tuple(values))
    sql = _UPDATES.get(key)
    if sql is None:
        quote = db.ops.quote_name
        sets = ", ".join(f"{quote(opts.get_field(name).column)} = %s" for name in values)
        sql = _UPDATES[key] = f"UPDATE {quote(opts.db_table)} SET {sets} WHERE {quote(opts.pk.column)} = %s"
    return sql, [opts.get_field(name).get_db_prep_save(value, connection=db) for name, value in values.items()] + [pk]


# --------------------------------------------------------------------------- stored mails


def insert_messages(*, messages: list[dict], attachments: list[list[dict]]) -> list[int]:
    """Insert StoredMessage rows (dicts of attname -> value) and, for each, its Attachment rows
    (dicts without message_id: set here). Returns the messages' ids, in order. A unique violation
    raises IntegrityError for the whole call (the caller's transaction decides)."""
    if not messages:
        return []
    if fast() and len(messages) > 1:
        # COPY straight from column values: no model instances for a batch of rows.
        db = transaction.get_connection()
        ids = _copy_insert(db, StoredMessage, messages)
        rows = []
        for pk, atts in zip(ids, attachments):
            for values in atts:
                values["message_id"] = pk
                rows.append(values)
        if rows:
            _copy_insert(db, Attachment, rows)
        return ids
    created = StoredMessage.objects.bulk_create([StoredMessage(**values) for values in messages])
    attachment_rows = [Attachment(message_id=row.pk, **values)
                       for row, atts in zip(created, attachments) for values in atts]
    if attachment_rows:
        Attachment.objects.bulk_create(attachment_rows, batch_size=500)
    return [row.pk for row in created]


def mark_post_processed(pks: list[int], *, now: datetime | None = None) -> None:
    """Record that these stored mails' post-processing on the server is done."""
    if not pks:
        return
    now = now or timezone.now()
    if not fast():
        StoredMessage.objects.filter(pk__in=pks, post_processed_at__isnull=True).update(post_processed_at=now)
        return
    # One array parameter instead of the ORM's IN list of 200 placeholders (compiled per call).
    db = transaction.get_connection()
    table = db.ops.quote_name(StoredMessage._meta.db_table)
    with db.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET post_processed_at = %s WHERE id = ANY(%s) AND post_processed_at IS NULL",
                       [now, list(pks)])


def stored_server_keys(*, connection_id: int, server_keys: list[str]) -> set[str]:
    """Which of these server keys (a mail's identity on its server) the connection has stored."""
    if not server_keys:
        return set()
    if not fast():
        found: set[str] = set()
        for start in range(0, len(server_keys), 5000):  # bounded IN lists
            found.update(StoredMessage.objects.filter(connection_id=connection_id,
                                                      server_key__in=server_keys[start:start + 5000])
                         .values_list("server_key", flat=True))
        return found
    # One array parameter, not the ORM's IN list compiled with a placeholder per key (20 ms of
    # CPU for 2,000 keys before a poll's first FETCH); the unique (connection, server_key)
    # index finds the rows.
    db = transaction.get_connection()
    table = db.ops.quote_name(StoredMessage._meta.db_table)
    with prepared_cursor(db) as cursor:
        cursor.execute(f"SELECT server_key FROM {table} WHERE connection_id = %s AND server_key = ANY(%s)",
                       [connection_id, list(server_keys)], prepare=True)
        return {row[0] for row in cursor.fetchall()}


def _copy_insert(db, model, rows: list[dict]) -> list[int]:
    """PostgreSQL: ids reserved from the sequence in one query, the rows (dicts of attname ->
    value; missing columns take the field's default) sent with COPY. Returns the ids.

    Much cheaper than the ORM's bulk_create for a batch of 200 (no model instances, no
    per-field preparation of 24 fields per row). A unique violation aborts the whole COPY and
    surfaces as IntegrityError, exactly like the INSERT it replaces.
    """
    opts = model._meta
    table = opts.db_table
    fields = [f for f in opts.concrete_fields if not f.primary_key]
    # Binary COPY when every column's type is known to psycopg: no text escaping of the
    # bodies (several times cheaper for the client than the text format).
    types = [_copy_type(f, db) for f in [opts.pk, *fields]]
    binary = all(types)
    # Each row is built by C-level dict lookups (map of row.get over the columns), then the
    # few columns that need a conversion fixed up: no Python call per value (29 per row).
    attnames, defaults = [f.attname for f in fields], [f.get_default() for f in fields]
    fixups = [(i + 1, fix) for i, f in enumerate(fields) if (fix := _copy_fixup(f, binary)) is not None]
    with db.wrap_database_errors, db.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [table, opts.pk.column, len(rows)],
        )
        ids = [r[0] for r in cursor.fetchall()]
        columns = ", ".join(db.ops.quote_name(c) for c in [opts.pk.column, *(f.column for f in fields)])
        raw_cursor = cursor.cursor  # psycopg's own cursor: COPY is not in the DB-API
        sql = f"COPY {db.ops.quote_name(table)} ({columns}) FROM STDIN" + (" (FORMAT BINARY)" if binary else "")
        with raw_cursor.copy(sql) as copy:
            if binary:
                copy.set_types(types)
            for pk, row in zip(ids, rows):
                values = [pk, *map(row.get, attnames, defaults)]  # the model's default when missing
                for i, fix in fixups:
                    values[i] = fix(values[i])
                copy.write_row(values)
    return ids


def _copy_fixup(f, binary: bool):
    """The conversion a column's value needs for COPY, or None (the value as it is)."""
    if isinstance(f, models.JSONField) and not binary:
        return json.dumps  # (binary JSON: psycopg's jsonb dumper serialises the object itself)
    if isinstance(f, models.FileField):
        return _file_name
    return None


def _file_name(value) -> str:
    return value or ""


def _copy_type(field, db) -> str | None:
    """The PostgreSQL type name psycopg needs for a binary COPY of the column, or None."""
    import psycopg

    declared = field.db_type(db)  # "varchar(300)", "timestamp with time zone", "bigint", …
    if not declared:
        return None
    info = psycopg.adapters.types.get(declared.split("(")[0].strip())
    return info.name if info is not None else None
