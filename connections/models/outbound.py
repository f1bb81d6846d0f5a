"""Outbound connections (the mail receiver adapter) and the outbox.

The outbox is a small state machine (see docs/outbound.md):

    queued --claim--> sending --server's final reply--> sent | failed
       ^                 |  transient failure, attempts left
       +-----------------+  (next_attempt_at = now + backoff)
    queued|failed --cancel/requeue (operator)--> cancelled | queued
    sending --lost after the data, before the reply--> uncertain --resend | mark sent--> queued | sent

A worker that dies leaves its messages in `sending` until its lease runs out; then
services/outbound/recovery.py puts them back to `queued`, or makes the one whose data had
started `uncertain` (docs/outbound.md, crash recovery).
"""
from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models

from .base import ConnectionBase
from .tenancy import TenantOwned


class BodyType(models.TextChoices):
    AUTO = "", "automatic (text/plain, text/html)"
    PLAIN = "text/plain", "text/plain"
    HTML = "text/html", "text/html"
    CSV = "text/csv", "text/csv"
    XML = "application/xml", "application/xml"
    JSON = "application/json", "application/json"
    OCTET = "application/octet-stream", "application/octet-stream"


class BodyCharset(models.TextChoices):
    UTF8 = "utf-8", "UTF-8"
    LATIN1 = "iso-8859-1", "ISO-8859-1"
    CP1252 = "windows-1252", "windows-1252"
    ASCII = "us-ascii", "US-ASCII"


class TransferEncoding(models.TextChoices):
    AUTO = "auto", "automatic"
    BASE64 = "base64", "base64"
    QP = "quoted-printable", "quoted-printable"
    SEVENBIT = "7bit", "7bit"
    EIGHTBIT = "8bit", "8bit"


class OutboundConnection(ConnectionBase):
    default_from = models.CharField(
        "default From", max_length=998,
        # The admin renders help texts as HTML: the address's angle brackets are escaped here.
        help_text='Used when a message names no From, e.g. "Acme Support &lt;support@acme.example&gt;".',
    )
    default_reply_to = models.CharField("default Reply-To", max_length=998, blank=True)
    max_per_session = models.PositiveIntegerField(
        "max messages per SMTP session", default=100,
        validators=[MinValueValidator(1, message="Send at least one message per SMTP session.")],
        help_text="After this many messages the SMTP session is closed and a new one opened.",
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        "rate limit (messages per minute)", null=True, blank=True,
        help_text="Leave empty for no limit.",
    )
    # The SIZE the server announced in its last EHLO, so that messages the server would
    # refuse anyway are refused when they are enqueued.
    smtp_max_size = models.PositiveBigIntegerField(
        "server SIZE limit (bytes)", null=True, blank=True, editable=False,
        help_text="From the server's last EHLO; empty when unknown or unlimited.",
    )
    smtp_max_size_seen_at = models.DateTimeField("server SIZE limit seen at", null=True, blank=True, editable=False)
    # What to do with a message whose fate is unknown (the connection or the worker was lost
    # after the message data was sent, before the server's final reply).
    resend_uncertain = models.BooleanField(
        "resend uncertain messages automatically", default=False,
        help_text="Off: such a message waits as <em>uncertain</em> for an operator (resend or mark sent). "
                  "On: it is sent again with the same Message-ID (the receiver may get it twice).",
    )
    # Receiver attributes (SAP's mail receiver adapter): used when a message gives none.
    default_to = models.TextField("default To", blank=True, help_text="Comma-separated; used when a message has no recipient.")
    default_cc = models.TextField("default Cc", blank=True, help_text="Comma-separated; used when a message has no recipient.")
    default_bcc = models.TextField("default Bcc", blank=True, help_text="Comma-separated; used when a message has no recipient.")
    default_subject = models.CharField("default Subject", max_length=998, blank=True,
                                       help_text="Used when a message has no subject.")
    body_type = models.CharField(
        "body MIME type", max_length=40, blank=True, choices=BodyType.choices, default="",
        help_text="Empty: text/plain, or text/html with an HTML body (both: multipart/alternative).",
    )
    body_charset = models.CharField("body charset", max_length=20, choices=BodyCharset.choices,
                                    default=BodyCharset.UTF8)
    transfer_encoding = models.CharField("Content-Transfer-Encoding", max_length=20,
                                         choices=TransferEncoding.choices, default=TransferEncoding.AUTO)
    # Retention (services/messages/retention.py): finished outbox messages older than this are deleted.
    keep_sent_days = models.PositiveIntegerField(
        "keep finished outbox messages (days)", null=True, blank=True,
        help_text="Sent, failed and cancelled messages older than this are deleted. Empty: keep forever.",
    )

    class Meta:
        verbose_name = "outbound connection"
        ordering = ["tenant__name", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_outbound_tenant_name")]

    protocol = "smtp"


class OutboxStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    # The worker or the connection was lost after the message data was sent, before the
    # server's final reply: it may or may not have been delivered (an operator decides).
    UNCERTAIN = "uncertain", "Uncertain"


class SendProgress(models.TextChoices):
    """How far a message in `sending` got: decides what recovery does after a crash."""

    CLAIMED = "claimed", "Claimed"
    SESSION = "session", "Session open"
    DATA = "data", "DATA started"
    REPLIED = "replied", "Final reply"


class OutboxMessage(TenantOwned):
    # RESTRICT: a connection with messages cannot be deleted on its own, but deleting its
    # tenant deletes both.
    connection = models.ForeignKey(OutboundConnection, on_delete=models.RESTRICT, related_name="outbox")
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
    # Set for every queued message (send_after, or the enqueue time): "due" is one index range.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Crash recovery (services/outbound/recovery.py): the sending worker's lease, renewed by
    # its heartbeat, and how far the message got. A message whose lease ran out goes back to
    # `queued` unless its DATA had started: then it is `uncertain`.
    lease_until = models.DateTimeField(null=True, blank=True)
    progress = models.CharField(max_length=8, choices=SendProgress.choices, blank=True, default="")
    last_error = models.TextField(blank=True)
    # address -> {"status": "accepted"} | {"status": "refused", "code": 550, "text": "..."}
    recipient_results = models.JSONField(default=dict, blank=True)
    # One entry per attempt: {"at", "outcome", "code", "detail"}; the delivery record.
    delivery_log = models.JSONField(default=list, blank=True)
    message_id = models.CharField("Message-ID", max_length=998, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The envelope and the message exactly as they go on the wire, built and checked at
    # enqueue time: a retry sends the same bytes with the same Message-ID.
    envelope_from = models.CharField(max_length=998, blank=True)
    envelope_to = models.JSONField(default=list, blank=True)
    mime = models.BinaryField(default=b"", editable=False)
    size = models.PositiveBigIntegerField("size (bytes)", default=0)
    # Recipients a server refused temporarily (4xx) while accepting others are tried again
    # in a follow-up message: the same bytes and Message-ID, only those recipients.
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries",
        help_text="The message whose temporarily refused recipients this one retries.",
    )

    class Meta:
        verbose_name = "outbox message"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="outbox_due_idx"),
            models.Index(fields=["connection", "status"], name="outbox_conn_status_idx"),
            models.Index(fields=["connection", "claimed_at"], name="outbox_conn_claimed_idx"),
            models.Index(fields=["status", "lease_until"], name="outbox_lease_idx"),
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


class OutboxTemplate(TenantOwned):
    """Subject and bodies as Django templates, rendered once at enqueue (services/outbound/templates.py)."""

    name = models.SlugField(max_length=100)
    subject = models.TextField(help_text="A Django template, e.g. <code>Invoice {{ number }}</code>.")
    text_body = models.TextField("text body", blank=True)
    html_body = models.TextField("HTML body", blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "outbox template"
        ordering = ["tenant__name", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_outbox_template_tenant_name")]

    def __str__(self) -> str:
        return self.name
