"""IMAP IDLE push: one lease row per push connection (which run_idle process holds its session)."""
from __future__ import annotations

from django.db import models

from .inbound import InboundConnection


class PushState(models.TextChoices):
    WAITING = "waiting", "Waiting for a run_idle process"
    CONNECTING = "connecting", "Connecting"
    IDLE = "idle", "Connected (IDLE)"
    RETRYING = "retrying", "Reconnecting after an error"
    UNSUPPORTED = "unsupported", "Server has no IDLE: polled on schedule"


class PushLease(models.Model):
    """Held by at most one run_idle process at a time (holder + expires_at, renewed while the
    session lives; an expired lease is taken over). Also the push state shown to operators."""

    connection = models.OneToOneField(InboundConnection, on_delete=models.CASCADE, related_name="push_lease")
    holder = models.CharField(max_length=255, blank=True, help_text="host:pid of the run_idle process")
    expires_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=PushState.choices, default=PushState.WAITING)
    connected_since = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    last_event = models.CharField(max_length=64, blank=True)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"push {self.connection_id} ({self.state})"
