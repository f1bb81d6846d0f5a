"""Stored messages polled from inbound connections, with their attachments."""
from __future__ import annotations

from django.db import models

from .inbound import InboundConnection
from .tenancy import TenantOwned


class StoredMessage(TenantOwned):
    connection = models.ForeignKey(InboundConnection, on_delete=models.PROTECT, related_name="messages")
    # Server identity: "imap:<uidvalidity>:<uid>" or "pop3:<uidl>"; unique per connection
    # so that a mail is never stored twice.
    server_key = models.CharField(max_length=300)
    uidvalidity = models.BigIntegerField(null=True, blank=True)
    uid = models.BigIntegerField(null=True, blank=True)
    uidl = models.CharField(max_length=255, blank=True)
    message_id = models.CharField(max_length=998, blank=True, db_index=True)
    from_header = models.TextField("From", blank=True)
    to_header = models.TextField("To", blank=True)
    cc_header = models.TextField("Cc", blank=True)
    reply_to_header = models.TextField("Reply-To", blank=True)
    subject = models.TextField(blank=True)
    date = models.DateTimeField(null=True, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    fetched_at = models.DateTimeField(db_index=True)
    raw = models.FileField(upload_to="raw/%Y/%m/%d/", max_length=255)
    raw_sha256 = models.CharField(max_length=64, db_index=True)
    text_body = models.TextField(blank=True)
    html_body = models.TextField(blank=True)
    # html_body sanitised once, when the mail is parsed (services.messages.safe_html); None for a mail
    # stored before that existed: the first page that shows it fills it in.
    safe_html = models.TextField(null=True, blank=True, editable=False)
    has_attachments = models.BooleanField(default=False)
    parsed = models.BooleanField(default=False)
    parse_problems = models.JSONField(default=list, blank=True)
    oversized = models.BooleanField(default=False)
    # Post-processing on the server (mark read / move / delete) is done after the commit.
    post_processed_at = models.DateTimeField(null=True, blank=True)
    # The searched body's tokens, each once (services.messages.search_words): the body search
    # index holds these instead of the whole body, at a fraction of the trigram cost.
    search_words = models.TextField(blank=True, default="", editable=False)
    # In the body search index yet? A mail parsed when stored is (its words are computed
    # with the parse); older or raw-only mails get their words from the
    # index_messages_for_search task (services.messages.indexes.index_for_search). Search finds
    # a mail either way: an unindexed one is read directly.
    search_indexed = models.BooleanField(default=False)
    # Retention: when bodies, attachments and raw file were removed (services/messages/retention.py).
    # The row stays, so that the server's copy is never fetched again.
    purged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-fetched_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "server_key"], name="uniq_message_server_identity"),
        ]
        indexes = [
            models.Index(fields=["connection", "post_processed_at"], name="message_pending_post_idx"),
            models.Index(fields=["connection", "parsed"], name="message_unparsed_idx"),
            models.Index(fields=["id"], condition=models.Q(search_indexed=False), name="message_unindexed_idx"),
        ]

    def __str__(self) -> str:
        return self.subject or f"(no subject) #{self.pk}"


class Attachment(TenantOwned):
    message = models.ForeignKey(StoredMessage, on_delete=models.CASCADE, related_name="attachments")
    filename = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=255, default="application/octet-stream")
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    inline = models.BooleanField(default=False)
    content_id = models.CharField(max_length=255, blank=True)
    file = models.FileField(upload_to="attachments/%Y/%m/%d/", max_length=255)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.filename or f"attachment #{self.pk}"
