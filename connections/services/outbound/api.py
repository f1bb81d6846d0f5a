"""The outbox as the API sees it: POST through `enqueue.enqueue`, with Idempotency-Key
enforced by a unique (tenant, key) constraint, and reading one message of a tenant."""
from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction

from ...errors import TenantMailError, ValidationError
from ...models import ApiIdempotencyKey, OutboxMessage
from ..access.lookup import ConnectionNotFound, find_connection
from .enqueue import enqueue
from .mime import AttachmentIn


class OutboxNotFound(TenantMailError):
    """No such outbox message in the token's tenant."""


class IdempotencyConflict(ValidationError):
    """The Idempotency-Key was used before for a different request."""


@dataclass
class Submitted:
    message: OutboxMessage
    replayed: bool


def _earlier(tenant_id: int, key: str, request_hash: str) -> Submitted | None:
    row = ApiIdempotencyKey.objects.select_related("outbox_message").filter(tenant_id=tenant_id, key=key).first()
    if row is None:
        return None
    if row.request_sha256 != request_hash:
        raise IdempotencyConflict("This Idempotency-Key was used for a different request.",
                                  hint="use a new key for a new message")
    return Submitted(row.outbox_message, replayed=True)


def submit(*, tenant_id: int, data: dict, idempotency_key: str | None, request_hash: str) -> Submitted:
    """Enqueue a message of the API's JSON; a key seen before returns the first message."""
    if idempotency_key:
        earlier = _earlier(tenant_id, idempotency_key, request_hash)
        if earlier:
            return earlier
    try:
        connection = find_connection(tenant=tenant_id, name=data["connection"], kind="outbound")
    except ConnectionNotFound:
        raise ValidationError(f"The tenant has no outbound connection named '{data['connection']}'.") from None
    attachments = [AttachmentIn(a["filename"], a["content_base64"], a.get("content_type") or "application/octet-stream")
                   for a in data.get("attachments") or []]
    try:
        with transaction.atomic():
            message = enqueue(
                connection_id=connection.pk, to=data.get("to") or [], cc=data.get("cc") or [],
                bcc=data.get("bcc") or [], subject=data.get("subject") or "", text=data.get("text") or "",
                html=data.get("html") or "", attachments=attachments,
            )
            if idempotency_key:
                ApiIdempotencyKey.objects.create(tenant_id=tenant_id, key=idempotency_key,
                                                 request_sha256=request_hash, outbox_message=message)
    except IntegrityError:
        # A concurrent POST with the same key committed first: ours was rolled back whole.
        earlier = _earlier(tenant_id, idempotency_key or "", request_hash) if idempotency_key else None
        if earlier is None:
            raise
        return earlier
    return Submitted(message, replayed=False)


def get(*, tenant_id: int, message_id: int) -> OutboxMessage:
    message = (OutboxMessage.objects.select_related("connection").defer("mime")
               .filter(pk=message_id, tenant_id=tenant_id).first())
    if message is None:
        raise OutboxNotFound("No such outbox message.")
    return message
