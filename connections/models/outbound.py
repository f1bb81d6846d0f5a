"""Outbound connections (the mail receiver adapter) and the outbox."""
from __future__ import annotations

from django.db import models

from .base import ConnectionBase
from .tenancy import TenantOwned


class OutboundConnection(ConnectionBase):
    default_from = models.CharField("default From", max_length=998)
    default_reply_to = models.CharField("default Reply-To", max_length=998, blank=True)
    max_per_session = models.PositiveIntegerField("max messages per SMTP session", default=100)
    rate_limit_per_minute = models.PositiveIntegerField(
        "rate limit (messages per minute)", null=True, blank=True
    )

    class Meta:
        ordering = ["tenant__name", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_outbound_tenant_name")]

    protocol = "smtp"


class OutboxStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class OutboxMessage(TenantOwned):
    connection = models.ForeignKey(OutboundConnection, on_delete=models.PROTECT, related_name="outbox")
    from_address = models.CharField("From", max_length=998)
    to = models.JSONField(default=list)
    cc = models.JSONField(default=list, blank=True)
    bcc = models.JSONField(default=list, blank=True)
    reply_to = models.CharField("Reply-To", max_length=998, blank=True)
    subject = models.TextField(blank=True)
    text_body = models.TextField(blank=True)
    html_body = models.TextField(blank=True)
    extra_headers = models.JSONField(default=dict, blank=True)
    priority = models.SmallIntegerField(default=0, help_text="Higher is sent first.")
    send_after = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=OutboxStatus.choices, default=OutboxStatus.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    recipient_results = models.JSONField(default=dict, blank=True)
    message_id = models.CharField(max_length=998, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="outbox_due_idx"),
            models.Index(fields=["connection", "status"], name="outbox_conn_status_idx"),
        ]

    def __str__(self) -> str:
        return self.subject or f"(no subject) #{self.pk}"


class OutboxAttachment(TenantOwned):
    message = models.ForeignKey(OutboxMessage, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to="outbox/%Y/%m/%d/", max_length=255)
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255, default="application/octet-stream")
    size = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return self.name
