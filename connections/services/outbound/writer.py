"""The outbox's outcome writer: how a sending worker records what happened to each message.

Every write is conditional — it lands only while the row is still ours (`sending`, the same
`claimed_at`): an operator or crash recovery may have taken the message meanwhile. Outside a
transaction the writes are buffered by the sending thread and group-committed (one short
transaction, on PostgreSQL one statement for all of them); before each message's data goes
out, `_Writer.mark_data` commits "DATA started" together with every outcome handed over
before it, from the sending thread, asynchronously on PostgreSQL (crash recovery relies on
it: recovery.py). Moved out of outbox.py apart from the barrier (issue 19).
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from ...errors import TenantMailError
from ...models import OutboxMessage, OutboxStatus, SendProgress

if TYPE_CHECKING:  # pragma: no cover
    from ..outbox import _Claimed

log = logging.getLogger("connections.services.outbox")


def _entry(outcome: str, detail: str = "", code: int | None = None, **extra: Any) -> dict:
    """One line of a message's delivery log."""
    entry = {"at": timezone.now().isoformat(timespec="seconds"), "outcome": outcome, "code": code, "detail": detail}
    entry.update(extra)
    return entry


def _update(item: _Claimed, *, followup: dict | None = None, **values: Any) -> bool:
    """Record an outcome, only if the message is still ours (an operator may have requeued it).

    One UPDATE: its own short transaction (or part of the caller's, if it has one); with a
    `followup` (recipients refused temporarily), the follow-up message in the same one.
    """
    if followup is None:
        done = _fast_update(item, values)
    else:
        with transaction.atomic():
            done = _fast_update(item, values)
            if done:
                _create_followup(item, **followup)
    if not done:
        log.warning("outbox: message %s changed while it was being sent; outcome %s not recorded",
                    item.id, values.get("status"))
    return bool(done)


def _fast_update(item: _Claimed, values: dict[str, Any]) -> int:
    """rows.update(**values) as one statement, without the ORM's query compiler: it runs once
    per message, and its CPU time competes with sending. On PostgreSQL
    with psycopg 3 it is a server-side prepared statement."""
    db = transaction.get_connection()
    meta = OutboxMessage._meta
    names = tuple(values)
    sql = _UPDATE_SQL.get((db.vendor, names))
    if sql is None:
        quote = db.ops.quote_name
        sets = ", ".join(f"{quote(meta.get_field(name).column)} = %s" for name in names)
        sql = (f"UPDATE {quote(meta.db_table)} SET {sets} WHERE {quote(meta.pk.column)} = %s "
               f"AND {quote(meta.get_field('status').column)} = %s "
               f"AND {quote(meta.get_field('claimed_at').column)} = %s")
        _UPDATE_SQL[(db.vendor, names)] = sql
    params = [meta.get_field(name).get_db_prep_save(values[name], connection=db) for name in names]
    params += [item.id, OutboxStatus.SENDING.value,
               meta.get_field("claimed_at").get_db_prep_save(item.claimed_at, connection=db)]
    if db.vendor == "postgresql" and not db.in_atomic_block and _psycopg_cursor is not None:
        db.ensure_connection()
        with _psycopg_cursor(db.connection) as cursor:
            cursor.execute(sql, params, prepare=True)
            return cursor.rowcount
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


_UPDATE_SQL: dict[tuple, str] = {}
try:  # psycopg 3: its plain (server-side binding) cursor, for prepared statements
    from psycopg import Cursor as _psycopg_cursor
except ImportError:  # pragma: no cover - psycopg 2 or another database
    _psycopg_cursor = None


def _create_followup(item: _Claimed, *, recipients: list[str], delay: float, reason: str) -> OutboxMessage:
    original = OutboxMessage.objects.get(pk=item.id)
    copy = OutboxMessage(
        tenant_id=original.tenant_id, connection_id=original.connection_id, retry_of=original,
        from_address=original.from_address, to=original.to, cc=original.cc, bcc=original.bcc,
        reply_to=original.reply_to, subject=original.subject, text_body=original.text_body,
        html_body=original.html_body, extra_headers=original.extra_headers, priority=original.priority,
        send_after=original.send_after, message_id=original.message_id, envelope_from=original.envelope_from,
        envelope_to=recipients, mime=original.mime, size=original.size,
        status=OutboxStatus.QUEUED, attempts=item.attempts + 1,
        next_attempt_at=timezone.now() + timedelta(seconds=delay), last_error=reason,
        delivery_log=[_entry("deferred", f"refused temporarily in message #{original.pk}: {reason}",
                             retry_in=int(delay))],
    )
    copy.save()
    return copy


def _update_group(jobs: list[tuple[_Claimed, dict[str, Any]]]) -> set[int]:
    """Group commit: the outcomes of several messages in ONE short transaction.

    On PostgreSQL one UPDATE … FROM (VALUES …) per shape of outcome (sent, retry, …) instead
    of one statement and one commit per message; elsewhere, and for outcomes with a follow-up
    message, one UPDATE each, still in the same transaction. Like `_update`, a row is only
    written while it is still ours (`sending`, same `claimed_at`).
    """
    db = transaction.get_connection()
    done: set[int] = set()
    if _one_statement(db, jobs):
        # The usual group — distinct messages, no follow-up — as ONE statement in autocommit
        # (atomic by itself): one round trip instead of BEGIN, one per shape, COMMIT. It is
        # what each message's "DATA started" barrier costs, so it counts.
        shapes_only: dict[tuple[str, ...], list[tuple[_Claimed, dict[str, Any]]]] = {}
        for item, values in jobs:
            shapes_only.setdefault(tuple(values), []).append((item, values))
        done = _bulk_update_all(db, list(shapes_only.items()))
        _warn_missing(jobs, done)
        return done
    with transaction.atomic():
        if db.vendor == "postgresql":
            with db.cursor() as cursor:
                cursor.execute(f"SELECT {_ASYNC_COMMIT}")
        shapes: dict[tuple[str, ...], list[tuple[_Claimed, dict[str, Any]]]] = {}
        seen: set[int] = set()
        for item, values in jobs:
            values = dict(values)
            followup = values.pop("followup", None)
            if item.id in seen and shapes:  # keep each message's writes in order
                for names, rows in shapes.items():
                    done.update(_bulk_update(db, names, rows))
                shapes.clear()
            if followup is not None or db.vendor != "postgresql" or item.id in seen:
                if _fast_update(item, values):
                    done.add(item.id)
                    if followup is not None:
                        _create_followup(item, **followup)
            else:
                shapes.setdefault(tuple(values), []).append((item, values))
            seen.add(item.id)
        for names, rows in shapes.items():
            done.update(_bulk_update(db, names, rows))
    _warn_missing(jobs, done)
    return done


def _one_statement(db, jobs: list[tuple[_Claimed, dict[str, Any]]]) -> bool:
    return (db.vendor == "postgresql" and not db.in_atomic_block and _psycopg_cursor is not None
            and len({item.id for item, _ in jobs}) == len(jobs)
            and all("followup" not in values for _, values in jobs))


def _warn_missing(jobs: list[tuple[_Claimed, dict[str, Any]]], done: set[int]) -> None:
    for item, values in jobs:
        if item.id not in done:
            log.warning("outbox: message %s changed while it was being sent; outcome %s not recorded",
                        item.id, values.get("status") or values.get("progress"))


def _bulk_update(db, names: tuple[str, ...], rows: list[tuple[_Claimed, dict[str, Any]]]) -> set[int]:
    """PostgreSQL: one UPDATE for many rows with the same columns; returns the ids written."""
    return _bulk_update_all(db, [(names, rows)])


def _bulk_update_all(db, groups: list[tuple[tuple[str, ...], list[tuple[_Claimed, dict[str, Any]]]]]) -> set[int]:
    """PostgreSQL: the UPDATEs of several shapes as one statement (data-modifying CTEs)."""
    parts = [_bulk_sql(db, names, rows) for names, rows in groups]
    # One row: the ids written, and `synchronous_commit` off for this statement's own
    # transaction (or the caller's): see _ASYNC_COMMIT.
    sql = ("WITH " + ", ".join(f"u{i} AS ({part_sql})" for i, (part_sql, _) in enumerate(parts))
           + f" SELECT {_ASYNC_COMMIT}, ARRAY("
           + " UNION ALL ".join(f"SELECT * FROM u{i}" for i in range(len(parts))) + ")")
    params = [p for _, part_params in parts for p in part_params]
    db.ensure_connection()
    if _psycopg_cursor is not None:  # server-side binding: prepared once the shape recurs
        with _psycopg_cursor(db.connection) as cursor:
            cursor.execute(sql, params)
            return set(cursor.fetchone()[1])
    with db.cursor() as cursor:  # pragma: no cover - psycopg 2
        cursor.execute(sql, params)
        return set(cursor.fetchone()[1])


# The outcome writes commit without waiting for the WAL flush: still visible to every other
# session at once (a killed worker loses nothing, recovery sees them), only a crash of the
# PostgreSQL server itself can lose the last fraction of a second of them — those messages
# then look as if the worker had died just before (docs/outbound.md, crash recovery). A
# transaction-local setting (like SET LOCAL), so it costs no extra round trip and the
# connection's other work (claims) stays synchronous.
_ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true)"


def _bulk_sql(db, names: tuple[str, ...], rows: list[tuple[_Claimed, dict[str, Any]]]) -> tuple[str, list[Any]]:
    meta = OutboxMessage._meta
    key = (names, len(rows))
    sql = _BULK_SQL.get(key)
    if sql is None:
        quote = db.ops.quote_name
        fields = [meta.get_field(name) for name in names]
        casts = [meta.pk.rel_db_type(db), meta.get_field("claimed_at").db_type(db)] + [f.db_type(db) for f in fields]
        row = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
        columns = ", ".join(["v_id", "v_claimed"] + [f"v_{i}" for i in range(len(fields))])
        sets = ", ".join(f"{quote(f.column)} = v.v_{i}" for i, f in enumerate(fields))
        pk, status, claimed = quote(meta.pk.column), quote(meta.get_field("status").column), quote(
            meta.get_field("claimed_at").column)
        sql = (f"UPDATE {quote(meta.db_table)} AS t SET {sets} FROM (VALUES {', '.join([row] * len(rows))}) "
               f"AS v({columns}) WHERE t.{pk} = v.v_id AND t.{status} = %s AND t.{claimed} = v.v_claimed "
               f"RETURNING t.{pk}")
        _BULK_SQL[key] = sql
    claimed_field = meta.get_field("claimed_at")
    fields = [meta.get_field(name) for name in names]
    params: list[Any] = []
    for item, values in rows:
        params.append(item.id)
        params.append(claimed_field.get_db_prep_save(item.claimed_at, connection=db))
        params.extend(f.get_db_prep_save(values[f.name], connection=db) for f in fields)
    params.append(OutboxStatus.SENDING.value)
    return sql, params


_BULK_SQL: dict[tuple, str] = {}


class _NotOurs(TenantMailError):
    """The message left `sending` (an operator, or recovery) before its data went out."""


class _Writer:
    """Records outcomes in the order given, in groups: one statement (or one short
    transaction) per group, committed by the sending thread itself.

    Buffered when the caller is not inside a transaction (a worker, the CLI): outcomes wait
    in memory and go out together with the next message's "DATA started" — `mark_data`
    commits it with every outcome handed over before it, in ONE statement (one round trip)
    on PostgreSQL, before that message's data goes out. So when a worker dies, at most its
    last message lacks an outcome (it becomes `uncertain`, see outbound/recovery.py); all
    others are recorded or provably untried. `flush` writes what is left (the sender calls
    it when a session's last message has its reply, before QUIT). No transaction is ever
    open across network I/O: each group is committed before the data goes out.

    On PostgreSQL these commits are asynchronous (`synchronous_commit` off for that one
    transaction, see `_ASYNC_COMMIT`): visible to every other session at once, so a killed
    worker loses nothing; only a crash of the PostgreSQL server itself can lose the last
    fraction of a second of them (docs/outbound.md, crash recovery). Claims stay synchronous.
    """

    GROUP_MAX = 64  # outcomes buffered without a barrier (failures before the data) are written at this many

    def __init__(self, *, threaded: bool) -> None:
        # `threaded`: outside a transaction (the name is kept: the heartbeat and the MIME
        # loader use threads then, and tests tune this class).
        self.threaded = threaded
        self._pending: list[tuple[_Claimed, dict[str, Any]]] = []

    def __call__(self, item: _Claimed, **values: Any) -> None:
        if not self.threaded:
            _update(item, **values)
            return
        self._pending.append((item, values))
        if len(self._pending) >= self.GROUP_MAX:
            self.flush()

    def mark_data(self, item: _Claimed) -> None:
        """Commit "DATA started" for `item` — with every outcome handed over before it — and
        return once committed: called right before the message data goes out (crash recovery
        relies on it, see outbound/recovery.py). Raises when the message is no longer ours."""
        values = {"progress": SendProgress.DATA}
        if not self.threaded:
            ours = bool(_fast_update(item, values))
        else:
            ours = item.id in self._commit([(item, values)])
        if not ours:
            raise _NotOurs(f"message #{item.id} was changed by an operator while being sent; not sent")

    def flush(self) -> None:
        """Write every outcome handed over so far (one statement or short transaction)."""
        if self.threaded and self._pending:
            self._commit([])

    def _commit(self, extra: list[tuple[_Claimed, dict[str, Any]]]) -> set[int]:
        jobs, self._pending = self._pending + extra, []
        return _update_group(jobs)

    def close(self) -> None:
        """Write what is left; raises the write's error, if any."""
        self.flush()
