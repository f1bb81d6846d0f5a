"""Webhooks: an HTTP POST, signed, for every stored mail of an inbound connection
(`message.stored`), or for every finished outbox message of a tenant (`outbox.sent`,
`outbox.failed`), with one WebhookDelivery row per event (the delivery log).

See docs/webhooks.md and connections/services/webhooks/.
"""
from __future__ import annotations

import uuid

from django.db import models

from ..fields import EncryptedSecretField
from .inbound import InboundConnection
from .tenancy import TenantOwned

EVENT_MESSAGE_STORED = "message.stored"
EVENT_OUTBOX_SENT = "outbox.sent"
EVENT_OUTBOX_FAILED = "outbox.failed"


class WebhookState(models.TextChoices):
    ACTIVE = "active", "Active"
    DISABLED = "disabled", "Disabled after failures"


class Webhook(TenantOwned):
    # Set: the connection's message.stored hook. Empty: the tenant's outbox hook.
    connection = models.ForeignKey(
        InboundConnection, null=True, blank=True, on_delete=models.CASCADE, related_name="webhooks",
        help_text="Inbound connection whose stored mails are posted; empty for the tenant's outbox events.",
    )
    url = models.URLField("URL", max_length=2000)
    secret = EncryptedSecretField(help_text="Key of the HMAC-SHA256 signature (X-TenantMail-Signature).")
    secret_env = models.CharField(
        "secret environment variable", max_length=255, blank=True,
        help_text="Set by apply_config: the environment variable its file reads the secret from.",
    )
    enabled = models.BooleanField(default=True)
    state = models.CharField(max_length=12, choices=WebhookState.choices, default=WebhookState.ACTIVE)
    state_detail = models.TextField(blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # message.stored: the highest StoredMessage id that has its delivery row.
    cursor = models.BigIntegerField(default=0, editable=False)
    # One delivery run per webhook at a time (bounded concurrency).
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant__name", "connection__name"]
        constraints = [
            models.UniqueConstraint(fields=["connection"], condition=models.Q(connection__isnull=False),
                                    name="uniq_webhook_connection"),
            models.UniqueConstraint(fields=["tenant"], condition=models.Q(connection__isnull=True),
                                    name="uniq_webhook_tenant_outbox"),
        ]

    def __str__(self) -> str:
        return f"{self.connection.name if self.connection_id else 'outbox'} → {self.url}"

    @property
    def events(self) -> list[str]:
        return [EVENT_MESSAGE_STORED] if self.connection_id else [EVENT_OUTBOX_SENT, EVENT_OUTBOX_FAILED]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class WebhookDelivery(TenantOwned):
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    event = models.CharField(max_length=32)
    # The StoredMessage (message.stored) or OutboxMessage (outbox.*) the event is about.
    object_id = models.BigIntegerField()
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    replayed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["webhook", "event", "object_id"], name="uniq_delivery_event_object"),
        ]
        indexes = [models.Index(fields=["webhook", "status", "next_attempt_at"], name="delivery_due_idx")]

    def __str__(self) -> str:
        return f"{self.event} #{self.object_id} ({self.status})"
