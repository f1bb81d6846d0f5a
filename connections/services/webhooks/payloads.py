"""The JSON bodies of webhook deliveries, built from the rows when they are sent."""
from __future__ import annotations

import email.utils
from typing import Any


from connections.conf import conf
from ...models import Attachment, OutboxMessage, StoredMessage
from ..messages.headers import decode_encoded_words


def base_url() -> str:
    return conf.base_url()


def api_url(path: str) -> str:
    return f"{base_url()}/api/v1/{path.lstrip('/')}"


def addresses(header: str) -> list[str]:
    """The addresses of a To/Cc header, each as 'Name <addr>' or 'addr'."""
    decoded = decode_encoded_words(header or "")
    if not decoded.strip():
        return []
    try:
        pairs = email.utils.getaddresses([decoded])
    except (ValueError, IndexError, TypeError):
        return [decoded.strip()]
    return [_display(name, address) for name, address in pairs if name or address]


def _display(name: str, address: str) -> str:
    if not name:
        return address
    if any(c in name for c in ',;:<>@"()[]\\'):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address}>"


def attachment_items(message_id: int, attachments: list[Attachment]) -> list[dict[str, Any]]:
    """Attachments in order (index n = position, 0-based) with their API URLs."""
    return [
        {"index": n, "filename": a.filename, "content_type": a.content_type, "size": a.size,
         "inline": a.inline, "url": api_url(f"messages/{message_id}/attachments/{n}")}
        for n, a in enumerate(attachments)
    ]


def message_data(message: StoredMessage, attachments: list[Attachment]) -> dict[str, Any]:
    """The fields of a stored mail both the webhook and the API give."""
    return {
        "id": message.pk,
        "tenant": message.tenant.slug,
        "connection": message.connection.name,
        "from": decode_encoded_words(message.from_header),
        "to": addresses(message.to_header),
        "cc": addresses(message.cc_header),
        "subject": decode_encoded_words(message.subject),
        "date": message.date.isoformat() if message.date else None,
        "message_id": message.message_id,
        "size": message.size,
        "fetched_at": message.fetched_at.isoformat(),
        "parsed": message.parsed,
        "purged": message.purged_at is not None,
        "attachments": attachment_items(message.pk, attachments),
        "raw_url": api_url(f"messages/{message.pk}/raw"),
        "url": api_url(f"messages/{message.pk}/"),
    }


def messages_stored(message_ids: list[int]) -> dict[int, dict[str, Any]]:
    """id -> message.stored data, in two queries; missing ids are left out."""
    messages = StoredMessage.objects.select_related("tenant", "connection").defer(
        "text_body", "html_body", "parse_problems").filter(pk__in=message_ids)
    attachments: dict[int, list[Attachment]] = {}
    for att in Attachment.objects.filter(message_id__in=message_ids).order_by("id"):
        attachments.setdefault(att.message_id, []).append(att)
    return {m.pk: message_data(m, attachments.get(m.pk, [])) for m in messages}


def outbox_data(message: OutboxMessage) -> dict[str, Any]:
    return {
        "id": message.pk,
        "tenant": message.tenant.slug,
        "connection": message.connection.name,
        "status": message.status,
        "to": message.to, "cc": message.cc,
        "subject": message.subject,
        "message_id": message.message_id,
        "attempts": message.attempts,
        "sent_at": message.sent_at.isoformat() if message.sent_at else None,
        "last_error": message.last_error,
        "recipients": message.recipient_results or {},
        "url": api_url(f"outbox/{message.pk}/"),
    }


def outbox_finished(message_id: int) -> dict[str, Any] | None:
    try:
        message = OutboxMessage.objects.select_related("tenant", "connection").defer("mime").get(pk=message_id)
    except OutboxMessage.DoesNotExist:
        return None
    return outbox_data(message)
