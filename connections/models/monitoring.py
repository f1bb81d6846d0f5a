"""Monitoring: process heartbeats, alerts (firing -> resolved; acknowledged), per-tenant alert
settings, webhook deliveries and the counters behind /metrics (see docs/monitoring.md)."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from .tenancy import Tenant


class Heartbeat(models.Model):
    """One row per live process kind: "beat", "worker:<hostname>", and "watchdog" (the last
    watchdog pass; its conditional update lets one process run a pass per interval)."""

    name = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=16)  # beat | worker | watchdog
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class AlertState(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class Severity(models.TextChoices):
    CRITICAL = "critical", "Critical"
    WARNING = "warning", "Warning"


class Alert(models.Model):
    """A problem the watchdog found. `key` dedups: at most one firing alert per key. A tenant's
    alert has its tenant; a system alert (beat, workers, queue, disk) has none."""

    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    kind = models.CharField(max_length=40)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    state = models.CharField(max_length=10, choices=AlertState.choices, default=AlertState.FIRING)
    title = models.CharField(max_length=300)
    detail = models.TextField(blank=True)
    subjects = models.JSONField(default=list, blank=True, help_text="What the alert is about (e.g. connection names).")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_notified_at = models.DateTimeField(null=True, blank=True)
    notified_state = models.CharField(max_length=10, blank=True)

    class Meta:
        ordering = ["state", "-last_seen"]
        constraints = [
            models.UniqueConstraint(fields=["key"], condition=Q(state="firing"), name="uniq_alert_firing_key"),
        ]
        indexes = [models.Index(fields=["state", "tenant"], name="alert_state_tenant_idx")]

    def __str__(self) -> str:
        return self.title


class AlertSettings(models.Model):
    """The `alerts:` block of a tenant in the configuration file."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="alert_settings")
    email_to = models.JSONField(default=list, blank=True)
    email_via = models.CharField(max_length=150, blank=True, help_text="Name of an outbound connection of this tenant.")
    webhook_url = models.URLField(max_length=1000, blank=True)
    webhook_secret_env = models.CharField(max_length=200, blank=True, help_text="Environment variable with the HMAC secret.")
    failing_after = models.PositiveIntegerField(default=3)
    remind_every_hours = models.PositiveIntegerField(default=24)

    class Meta:
        verbose_name_plural = "alert settings"

    def __str__(self) -> str:
        return f"alerts of {self.tenant}"


class AlertDelivery(models.Model):
    """One alert notification to a webhook; a Celery task posts it (retried with backoff)."""

    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    url = models.URLField(max_length=1000)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"webhook #{self.pk} to {self.url}"


class MetricCounter(models.Model):
    """A Prometheus counter value shared by every process (web, workers, their children):
    incremented in the database, read at scrape time. Labels are a bounded set."""

    name = models.CharField(max_length=100)
    labels = models.CharField(max_length=200, blank=True)  # 'outcome="success"'
    value = models.FloatField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "labels"], name="uniq_metric_counter")]

    def __str__(self) -> str:
        return f"{self.name}{{{self.labels}}}"


class OutboundSendState(models.Model):
    """An outbound connection's run-time send state (issue 16), written after each send run:
    failed sends in a row (reset by a success), the last error and since when, and until when
    its messages are held after a connection problem (credentials, authentication, TLS)."""

    connection = models.OneToOneField("connections.OutboundConnection", primary_key=True, on_delete=models.CASCADE,
                                      related_name="send_state")
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_send_at = models.DateTimeField(null=True, blank=True)
    last_send_ok = models.BooleanField(null=True)
    last_error = models.TextField(blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    held_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"send state of outbound #{self.connection_id}"
