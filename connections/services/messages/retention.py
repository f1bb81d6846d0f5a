"""Retention: removing old mail, and erasing one mail on request.

- Inbound connections with `keep_days`: stored mail fetched longer ago than that loses its
  text and HTML bodies, its attachments (rows and files) and its raw file; `purged_at` is
  set. The row itself stays — with its server identity (`server_key`) and headers — so a
  mail kept on the server is never fetched again.
- Outbound connections with `keep_sent_days`: finished outbox messages (sent, failed,
  cancelled) older than that are deleted with their attachment files.
- `erase()`: one stored mail, on a data-protection request: purged as above and its
  headers blanked too; admin role required, a reason recorded in the admin log.

Files are deleted after the rows' transaction commits (a crash in between leaves orphan
files, which sweep_orphan_files removes — never a row pointing at a missing file that
claims to be complete).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models.functions import Coalesce, Length
from django.utils import timezone

from connections.conf import conf
from ...errors import ValidationError
from ...models import (
    Attachment, DeliveryStatus, InboundConnection, OutboundConnection, OutboxAttachment, OutboxMessage, OutboxStatus,
    StoredMessage, WebhookDelivery,
)
from ...models.webhooks import EVENT_MESSAGE_STORED
from ..access.lookup import find_tenant
from ..access import tenancy

log = logging.getLogger(__name__)

CHUNK = 500
FINISHED = (OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.CANCELLED)


@dataclass
class ConnectionPurge:
    tenant: str
    connection: str
    direction: str  # inbound | outbound
    older_than_days: int
    messages: int = 0
    attachments: int = 0
    bytes: int = 0


@dataclass
class PurgeResult:
    dry_run: bool = False
    deliveries_pruned: int = 0  # webhook delivery log rows older than WEBHOOK_LOG_RETENTION_DAYS
    connections: list[ConnectionPurge] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return sum(c.messages for c in self.connections)

    @property
    def attachments(self) -> int:
        return sum(c.attachments for c in self.connections)

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.connections)

    def to_dict(self) -> dict:
        return {"dry_run": self.dry_run, "deliveries_pruned": self.deliveries_pruned, "messages": self.messages, "attachments": self.attachments,
                "bytes": self.bytes, "connections": [c.__dict__ for c in self.connections]}


def _file_size(name: str) -> int:
    if not name:
        return 0
    try:
        return default_storage.size(name)
    except (OSError, NotImplementedError):
        return 0


def _delete_files(names: list[str]) -> None:
    for name in names:
        if not name:
            continue
        try:
            default_storage.delete(name)
        except OSError as exc:  # already gone, or the storage refuses: the row is purged anyway
            log.warning("retention: could not delete a file (%s)", type(exc).__name__)


def _scoped(model, *, tenant: str | None, connection: str | None):
    qs = model.objects.select_related("tenant")
    if tenant:
        qs = qs.filter(tenant=find_tenant(slug=tenant))
    if connection:
        qs = qs.filter(name=connection)
    return qs


def purge(*, tenant: str | None = None, connection: str | None = None, older_than_days: int | None = None,
          dry_run: bool = False, now: datetime | None = None) -> PurgeResult:
    """Apply retention. `older_than_days` overrides every connection's own setting (and
    applies to connections without one); without it only connections with keep_days /
    keep_sent_days are purged. `dry_run` reports what would be removed, removes nothing."""
    if older_than_days is not None and older_than_days < 0:
        raise ValidationError("--older-than-days must be 0 or more.")
    now = now or timezone.now()
    result = PurgeResult(dry_run=dry_run)
    inbound = _scoped(InboundConnection, tenant=tenant, connection=connection)
    outbound = _scoped(OutboundConnection, tenant=tenant, connection=connection)
    if connection and not inbound.exists() and not outbound.exists():
        raise ValidationError(f"No connection named '{connection}'" + (f" in tenant '{tenant}'." if tenant else "."))
    for conn in inbound.order_by("tenant__slug", "name"):
        days = older_than_days if older_than_days is not None else conn.keep_days
        if days is not None:
            report = ConnectionPurge(conn.tenant.slug, conn.name, "inbound", days)
            _purge_inbound(conn, now - timedelta(days=days), report, dry_run=dry_run, now=now)
            result.connections.append(report)
    if not tenant and not connection and not dry_run:
        result.deliveries_pruned = prune_delivery_log(now=now)
    for conn in outbound.order_by("tenant__slug", "name"):
        days = older_than_days if older_than_days is not None else conn.keep_sent_days
        if days is not None:
            report = ConnectionPurge(conn.tenant.slug, conn.name, "outbound", days)
            _purge_outbound(conn, now - timedelta(days=days), report, dry_run=dry_run)
            result.connections.append(report)
    return result


def prune_delivery_log(*, now: datetime) -> int:
    """Delete finished webhook deliveries older than WEBHOOK_LOG_RETENTION_DAYS (pending ones stay)."""
    
    days = int(conf.WEBHOOK_LOG_RETENTION_DAYS)
    cutoff = now - timedelta(days=days)
    deleted = 0
    while True:
        ids = list(WebhookDelivery.objects.filter(created_at__lt=cutoff).exclude(status=DeliveryStatus.PENDING)
                   .values_list("id", flat=True)[:5000])
        if not ids:
            return deleted
        deleted += WebhookDelivery.objects.filter(pk__in=ids).delete()[0]


def _purge_inbound(conn: InboundConnection, cutoff: datetime, report: ConnectionPurge, *, dry_run: bool,
                   now: datetime) -> None:
    last = 0
    while True:
        rows = list(StoredMessage.objects.filter(connection=conn, fetched_at__lt=cutoff, purged_at__isnull=True,
                                                 id__gt=last)
                    .order_by("id").annotate(body_len=Length("text_body") + Length("html_body"))
                    .values_list("id", "raw", "body_len")[:CHUNK])
        if not rows:
            return
        last = rows[-1][0]
        ids = [r[0] for r in rows]
        files = [r[1] for r in rows]
        atts = list(Attachment.objects.filter(message_id__in=ids).values_list("file", flat=True))
        files += atts
        report.messages += len(ids)
        report.attachments += len(atts)
        report.bytes += sum(_file_size(n) for n in files) + sum(r[2] or 0 for r in rows)
        if not dry_run:
            _strip(ids, now=now, files=files)


def _strip(ids: list[int], *, now: datetime, files: list[str], **blank: str) -> None:
    with transaction.atomic():
        Attachment.objects.filter(message_id__in=ids).delete()
        StoredMessage.objects.filter(pk__in=ids).update(
            text_body="", html_body="", search_words="", raw="", has_attachments=False, purged_at=now, **blank)
        transaction.on_commit(lambda: _delete_files(files))


def _purge_outbound(conn: OutboundConnection, cutoff: datetime, report: ConnectionPurge, *, dry_run: bool) -> None:
    base = OutboxMessage.objects.filter(connection=conn, status__in=FINISHED).alias(
        finished=Coalesce("sent_at", "created_at")).filter(finished__lt=cutoff)
    last = 0
    while True:
        rows = list(base.filter(id__gt=last).order_by("id").values_list("id", "size")[:CHUNK])
        if not rows:
            return
        last = rows[-1][0]
        ids = [r[0] for r in rows]
        files = list(OutboxAttachment.objects.filter(message_id__in=ids).values_list("file", flat=True))
        report.messages += len(ids)
        report.attachments += len(files)
        report.bytes += sum(r[1] for r in rows) + sum(_file_size(n) for n in files)
        if not dry_run:
            with transaction.atomic():
                OutboxMessage.objects.filter(retry_of_id__in=ids).update(retry_of=None)
                OutboxMessage.objects.filter(pk__in=ids).delete()
                transaction.on_commit(lambda f=files: _delete_files(f))


def erase(*, message_id: int, user: tenancy.UserLike, reason: str) -> StoredMessage:
    """Erase one stored mail (data-protection request): bodies, attachments, raw file and
    headers; the row keeps only its server identity so the mail is not fetched again.
    Admin role in the tenant required; the reason goes to the admin log."""
    from django.contrib.admin.models import CHANGE, LogEntry
    from django.contrib.contenttypes.models import ContentType

    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Give the reason for erasing this message (it is written to the admin log).")
    message = StoredMessage.objects.filter(pk=message_id).first()
    if message is None or not tenancy.can(user, message.tenant_id, action="view"):
        raise ValidationError("No such message.")
    tenancy.require(user, message.tenant_id, action="change")
    files = [message.raw.name, *Attachment.objects.filter(message_id=message_id).values_list("file", flat=True)]
    now = timezone.now()
    with transaction.atomic():
        _strip([message_id], now=now, files=files, from_header="", to_header="", cc_header="",
               reply_to_header="", subject="", message_id="")
        StoredMessage.objects.filter(pk=message_id).update(parse_problems=[])
        WebhookDelivery.objects.filter(event=EVENT_MESSAGE_STORED, object_id=message_id).delete()
        # Written directly: the object's repr (its subject) must not go into the log.
        LogEntry.objects.create(
            user_id=user.pk, content_type=ContentType.objects.get_for_model(StoredMessage),
            object_id=str(message_id), object_repr=f"message #{message_id}", action_flag=CHANGE,
            change_message=f"Erased (bodies, attachments, raw file, headers). Reason: {reason[:500]}",
        )
    message.refresh_from_db()
    return message
