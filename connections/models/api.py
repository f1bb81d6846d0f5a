"""API tokens of the JSON API (/api/v1/) and the Idempotency-Key records of its POSTs.

A token belongs to one tenant and carries scopes. Only a SHA-256 of the token is stored
(tokens are 256-bit random strings, so a fast hash is enough); the token itself is shown
once, when it is created. Revoking sets `revoked_at`; the row stays for the record.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models

from .outbound import OutboxMessage
from .tenancy import TenantOwned


class ApiScope(models.TextChoices):
    MESSAGES_READ = "messages:read", "Read stored messages"
    OUTBOX_READ = "outbox:read", "Read outbox messages"
    OUTBOX_WRITE = "outbox:write", "Send messages (and read them)"
    CONNECTIONS_READ = "connections:read", "Read connections and their state"


class ApiToken(TenantOwned):
    name = models.CharField(max_length=150)
    prefix = models.CharField(max_length=16, help_text="The token's first characters, to recognise it.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API token"
        ordering = ["tenant__name", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_apitoken_tenant_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class ApiIdempotencyKey(TenantOwned):
    """One `Idempotency-Key` of a POST /api/v1/outbox/: the unique constraint makes a
    retried (or concurrent) POST with the same key find the first message, never a second."""

    key = models.CharField(max_length=255)
    request_sha256 = models.CharField(max_length=64)
    outbox_message = models.ForeignKey(OutboxMessage, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="uniq_idempotency_tenant_key")]

    def __str__(self) -> str:
        return self.key
