"""Webhooks: signed HTTP POSTs for stored mail and finished outbox messages.

Public functions (keyword-only): `save_webhook`, `replay`, `enable`, `run`, `sweep`;
the signal receivers are connected in `connect_receivers()` (ConnectionsConfig.ready).
"""
from __future__ import annotations

from typing import Iterable

from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from ...errors import ValidationError
from ...models import (
    DeliveryStatus, InboundConnection, OutboundConnection, StoredMessage, Webhook, WebhookDelivery, WebhookState,
)
from ...models.webhooks import EVENT_OUTBOX_FAILED, EVENT_OUTBOX_SENT
from .delivery import RunReport, add_deliveries, kick, run, sweep  # noqa: F401 (public)

__all__ = ["RunReport", "connect_receivers", "enable", "replay", "run", "save_webhook", "sweep"]


def save_webhook(*, webhook: Webhook) -> Webhook:
    """Save a webhook; a new connection webhook starts after the mails stored so far."""
    if not webhook.secret:
        raise ValidationError("A webhook needs a secret (the key of its signature).")
    if webhook.connection_id and webhook.connection.tenant_id != webhook.tenant_id:
        raise ValidationError("The connection belongs to another tenant.")
    if webhook._state.adding and webhook.connection_id:
        webhook.cursor = StoredMessage.objects.filter(connection_id=webhook.connection_id).aggregate(
            m=Max("id"))["m"] or 0
    webhook.save()
    return webhook


def replay(*, delivery_ids: Iterable[int]) -> int:
    """Send these deliveries again (same X-TenantMail-Delivery uuid), now; returns how many."""
    ids = list(delivery_ids)
    now = timezone.now()
    with transaction.atomic():
        count = WebhookDelivery.objects.filter(pk__in=ids).update(
            status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now, replayed_at=now)
        for webhook_id in set(WebhookDelivery.objects.filter(pk__in=ids).values_list("webhook_id", flat=True)):
            transaction.on_commit(lambda w=webhook_id: kick(webhook_id=w))
    return count


def enable(*, webhook_ids: Iterable[int]) -> int:
    """Enable webhooks again (also those disabled after failures); their backlog is sent."""
    ids = list(webhook_ids)
    with transaction.atomic():
        count = Webhook.objects.filter(pk__in=ids).update(
            enabled=True, state=WebhookState.ACTIVE, state_detail="", disabled_at=None, consecutive_failures=0)
        WebhookDelivery.objects.filter(webhook_id__in=ids, status=DeliveryStatus.PENDING).update(
            next_attempt_at=timezone.now())
        for webhook_id in ids:
            transaction.on_commit(lambda w=webhook_id: kick(webhook_id=w))
    return count


# --------------------------------------------------------------------------- receivers


def on_message_stored(sender, *, connection_id: int, message_ids: list[int], **kwargs) -> None:
    """Kick the connection's webhook (its run turns the new rows into deliveries). Not when a
    run holds its lease: that run, or the follow-up it scheduled, picks the new rows up (the
    beat sweep is the safety net); a poll of many batches then publishes a task or two."""
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=timezone.now())
    for webhook_id in Webhook.objects.filter(free, connection_id=connection_id, enabled=True,
                                             state=WebhookState.ACTIVE).values_list("id", flat=True):
        kick(webhook_id=webhook_id)


def on_outbox_finished(sender, *, connection_id: int, sent: list[int], failed: list[int], **kwargs) -> None:
    """Deliveries for the tenant's outbox webhook, then a kick."""
    tenant_id = OutboundConnection.objects.filter(pk=connection_id).values_list("tenant_id", flat=True).first()
    if tenant_id is None:
        return
    for webhook in Webhook.objects.filter(tenant_id=tenant_id, connection__isnull=True, enabled=True):
        add_deliveries(webhook=webhook, event=EVENT_OUTBOX_SENT, object_ids=sent)
        add_deliveries(webhook=webhook, event=EVENT_OUTBOX_FAILED, object_ids=failed)
        if webhook.state == WebhookState.ACTIVE:
            kick(webhook_id=webhook.pk)


def connect_receivers() -> None:
    from ...signals import message_stored, outbox_message_finished

    message_stored.connect(on_message_stored, dispatch_uid="tenantmail-webhooks-stored")
    outbox_message_finished.connect(on_outbox_finished, dispatch_uid="tenantmail-webhooks-outbox")


def connection_webhook(*, connection: InboundConnection) -> Webhook | None:
    return Webhook.objects.filter(connection=connection).first()
