"""Putting messages into the outbox: every way in (admin, API, CLI, the email backend, alerts)
calls `enqueue` or `enqueue_many`. A message is checked and built first (prepare.py); the row
and its attachments are stored in one transaction, and a worker is kicked once it commits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from ...errors import TenantMailError, ValidationError
from ...models import OutboundConnection, OutboxAttachment, OutboxMessage, OutboxStatus
from ..persistence import outbound as persistence
from . import dispatch as dispatching, templates
from .mime import AttachmentIn
from .prepare import PreparedMessage, prepare

__all__ = ["enqueue", "enqueue_many", "BulkResult", "store", "send_test_mail"]


def enqueue(
    *,
    connection_id: int,
    to: Sequence[str] = (),
    subject: str = "",
    text: str = "",
    html: str = "",
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    reply_to: Sequence[str] | str | None = None,
    from_address: str | None = None,
    attachments: Iterable[AttachmentIn] = (),
    extra_headers: dict[str, str] | None = None,
    priority: int = 0,
    send_after: datetime | None = None,
    dispatch: bool = True,
    template: str | None = None,
    context: dict[str, Any] | None = None,
) -> OutboxMessage:
    """Check, build and store one message; a worker sends it once the transaction commits.

    `template` names one of the tenant's message templates, rendered now with `context`
    (templates.py); a subject or body given as well wins over the template's.

    `reply_to=None` uses the connection's default Reply-To; `from_address=None` its default
    From. `dispatch=False` leaves the message to the beat dispatcher (or to `send_now`).
    Raises connections.errors.ValidationError, with nothing stored, for bad input.
    """
    connection = None
    if template is not None:
        connection = OutboundConnection.objects.select_related("tenant").filter(pk=connection_id).first()
        if connection is None:
            raise ValidationError(f"No outbound connection #{connection_id}.")
        rendered = templates.apply(connection=connection, kwargs=dict(
            template=template, context=context, subject=subject, text=text, html=html))
        subject, text, html = rendered["subject"], rendered["text"], rendered["html"]
    prepared = prepare(
        connection_id=connection_id, to=to, subject=subject, text=text, html=html, cc=cc,
        bcc=bcc, reply_to=reply_to, from_address=from_address, attachments=attachments,
        extra_headers=extra_headers, priority=priority, send_after=send_after, connection=connection,
    )
    return store(prepared, dispatch=dispatch)


def store(prepared: PreparedMessage, *, dispatch: bool = True) -> OutboxMessage:
    """Store a prepared message and its attachments in one transaction; kick a worker on commit."""
    now = timezone.now()
    conn = prepared.connection
    with transaction.atomic():
        message = message_row(prepared, now)
        message.save(force_insert=True)
        save_attachments(prepared, message)
        if dispatch and conn.enabled and message.next_attempt_at <= now:
            # send_outbox.delay_on_commit, plus an expiry and robustness: a broker outage
            # must not turn a stored message into an exception for the caller (beat's
            # dispatcher sends it anyway).
            transaction.on_commit(lambda: dispatching.kick(connection_id=conn.pk), robust=True)
    return message


def message_row(prepared: PreparedMessage, now: datetime) -> OutboxMessage:
    """The unsaved outbox row of a prepared message (store and enqueue_many save it)."""
    conn = prepared.connection
    return OutboxMessage(
        tenant_id=conn.tenant_id, connection=conn,
        from_address=prepared.from_address, to=prepared.to, cc=prepared.cc, bcc=prepared.bcc,
        reply_to=prepared.reply_to, subject=prepared.subject,
        text_body=prepared.text, html_body=prepared.html, extra_headers=prepared.extra_headers,
        priority=prepared.priority, send_after=prepared.send_after,
        status=OutboxStatus.QUEUED,
        next_attempt_at=max(prepared.send_after, now) if prepared.send_after else now,
        message_id=prepared.message_id, envelope_from=prepared.envelope_from,
        envelope_to=prepared.envelope_to, mime=prepared.mime, size=len(prepared.mime),
    )


def save_attachments(prepared: PreparedMessage, message: OutboxMessage) -> None:
    for name, content_type, content in prepared.attachments:
        att = OutboxAttachment(
            tenant_id=message.tenant_id, message=message, name=name,
            content_type=content_type, size=len(content),
        )
        att.file.save(name, ContentFile(content), save=False)
        att.save()


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
    """Check, build and store many messages of one connection in ONE transaction (on
    PostgreSQL by COPY: persistence/outbound.py); one send task is kicked on commit.

    Each item takes the keyword arguments of `enqueue` (to, subject, text, html, cc, bcc,
    reply_to, from_address, attachments, extra_headers, priority, send_after) and optionally
    `template` and `context` (templates.py). An invalid item raises ValidationError naming its
    index, with nothing stored — or, with `skip_invalid`, is left out and listed in the
    result's `errors`. The Django email backend's `send_messages()` uses it.
    """
    try:
        connection = OutboundConnection.objects.select_related("tenant").get(pk=connection_id)
    except OutboundConnection.DoesNotExist:
        raise ValidationError(f"No outbound connection #{connection_id}.") from None
    result = BulkResult()
    prepared_list = _prepare_all(connection, messages, result, skip_invalid=skip_invalid)
    if not prepared_list:
        return result
    now = timezone.now()
    rows = [message_row(prepared, now) for prepared in prepared_list]
    with transaction.atomic():
        result.messages = persistence.insert_messages(rows)
        for prepared, row in zip(prepared_list, result.messages):
            if prepared.attachments:
                save_attachments(prepared, row)
        if dispatch and connection.enabled and any(row.next_attempt_at <= now for row in rows):
            transaction.on_commit(lambda: dispatching.kick(connection_id=connection.pk), robust=True)
    return result


def _prepare_all(connection: OutboundConnection, messages: Iterable[Mapping[str, Any]], result: BulkResult,
                 *, skip_invalid: bool) -> list[PreparedMessage]:
    prepared_list = []
    cache: dict[str, Any] = {}
    for index, item in enumerate(messages):
        try:
            kwargs = dict(item)
            if "template" in kwargs:
                kwargs = templates.apply(connection=connection, kwargs=kwargs, cache=cache)
            prepared_list.append(prepare(connection_id=connection.pk, connection=connection, **kwargs))
        except TenantMailError as exc:
            if not skip_invalid:
                raise ValidationError(f"Message {index + 1}: {exc}", hint=getattr(exc, "hint", "")) from None
            result.errors.append((index, str(exc)))
        except TypeError as exc:  # an unknown keyword in the item
            if not skip_invalid:
                raise ValidationError(f"Message {index + 1}: {exc}.") from None
            result.errors.append((index, str(exc)))
    return prepared_list


def send_test_mail(*, connection_id: int, to: str) -> OutboxMessage:
    """Enqueue the admin's test message through the connection."""
    connection = OutboundConnection.objects.select_related("tenant").get(pk=connection_id)
    now = timezone.now()
    return enqueue(
        connection_id=connection_id,
        to=[to],
        subject=f"TenantMail test message from {connection.name}",
        text=(
            f"This is a test message sent by TenantMail through the outbound connection "
            f"'{connection.name}' of tenant '{connection.tenant.name}' "
            f"({connection.host}:{connection.port or 'default port'}).\n\n"
            f"Queued at {now:%Y-%m-%d %H:%M:%S} UTC.\n"
        ),
        extra_headers={"X-TenantMail-Test": "yes"},
        priority=100,
    )
