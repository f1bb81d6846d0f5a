"""Bulk enqueue (issue 19): many messages of one connection in ONE transaction.

Every message is checked and built first (as `outbox.enqueue` does, with the connection loaded
once); then all rows go in in one short transaction — on PostgreSQL with COPY (ids taken from
the table's sequence first, in one query), elsewhere with `bulk_create` — and one send task
is kicked on commit. The Django email backend's `send_messages()` uses it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from django.db import connections, transaction
from django.utils import timezone

from ...errors import TenantMailError, ValidationError
from ...models import OutboundConnection, OutboxMessage
from .. import outbox
from . import templates

__all__ = ["enqueue_many", "BulkResult"]

# Rows per INSERT: big enough to amortise the round trip, small enough for the MIME bytes.
BATCH_SIZE = 500
# From this many rows on, PostgreSQL gets them by COPY (3-4x the rows per second of INSERT).
COPY_MIN = 20


@dataclass
class BulkResult:
    messages: list[OutboxMessage] = field(default_factory=list)  # stored, in the order given
    errors: list[tuple[int, str]] = field(default_factory=list)  # (index, reason) of the skipped ones

    def __len__(self) -> int:
        return len(self.messages)


def enqueue_many(
    *,
    connection_id: int,
    messages: Iterable[Mapping[str, Any]],
    dispatch: bool = True,
    skip_invalid: bool = False,
) -> BulkResult:
    """Check, build and store many messages in one transaction.

    Each item takes the keyword arguments of `outbox.enqueue` (to, subject, text, html, cc,
    bcc, reply_to, from_address, attachments, extra_headers, priority, send_after) and
    optionally `template` and `context` (outbound/templates.py). An invalid item raises
    ValidationError naming its index, with nothing stored — or, with `skip_invalid`, is left
    out and listed in the result's `errors`.
    """
    try:
        connection = OutboundConnection.objects.select_related("tenant").get(pk=connection_id)
    except OutboundConnection.DoesNotExist:
        raise ValidationError(f"No outbound connection #{connection_id}.") from None
    prepared_list = []
    result = BulkResult()
    cache: dict[str, Any] = {}
    for index, item in enumerate(messages):
        try:
            kwargs = dict(item)
            if "template" in kwargs:
                kwargs = templates.apply(connection=connection, kwargs=kwargs, cache=cache)
            prepared_list.append(outbox.prepare(connection_id=connection.pk, connection=connection, **kwargs))
        except TenantMailError as exc:
            if not skip_invalid:
                raise ValidationError(f"Message {index + 1}: {exc}", hint=getattr(exc, "hint", "")) from None
            result.errors.append((index, str(exc)))
        except TypeError as exc:  # an unknown keyword in the item
            if not skip_invalid:
                raise ValidationError(f"Message {index + 1}: {exc}.") from None
            result.errors.append((index, str(exc)))
    if not prepared_list:
        return result
    now = timezone.now()
    rows = [outbox.message_row(prepared, now) for prepared in prepared_list]
    with transaction.atomic():
        result.messages = _insert(rows)
        for prepared, row in zip(prepared_list, result.messages):
            if prepared.attachments:
                outbox.save_attachments(prepared, row)
        if dispatch and connection.enabled and any(row.next_attempt_at <= now for row in rows):
            transaction.on_commit(lambda: outbox.kick(connection_id=connection.pk), robust=True)
    return result


def _insert(rows: list[OutboxMessage]) -> list[OutboxMessage]:
    """Insert the rows (inside the caller's transaction); sets their primary keys."""
    db = connections[OutboxMessage.objects.db]
    if db.vendor != "postgresql" or not hasattr(db.connection, "pgconn") or len(rows) < COPY_MIN:
        return OutboxMessage.objects.bulk_create(rows, batch_size=BATCH_SIZE)
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
