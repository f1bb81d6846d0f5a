"""Monitoring thresholds, from Django settings (environment variables; see docs/monitoring.md)."""
from __future__ import annotations

from django.conf import settings


def _float(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def heartbeat_interval() -> float:
    """Seconds between a worker's heartbeats (and the beat's, at most)."""
    return _float("MONITORING_HEARTBEAT_INTERVAL", 10.0)


def watchdog_interval() -> float:
    return _float("WATCHDOG_INTERVAL", 60.0)


def dispatch_interval() -> float:
    return _float("POLL_DISPATCH_INTERVAL", 5.0)


def beat_stale_after() -> float:
    """Beat is dead after three dispatch intervals without a tick."""
    return 3 * max(dispatch_interval(), 1.0)


def worker_stale_after() -> float:
    return 3 * max(heartbeat_interval(), 1.0)


def failing_after_default() -> int:
    return int(getattr(settings, "ALERT_FAILING_AFTER", 3))


def remind_every_hours_default() -> float:
    return _float("ALERT_REMIND_EVERY_HOURS", 24.0)


def queue_depth_max() -> int:
    return int(getattr(settings, "ALERT_QUEUE_DEPTH_MAX", 1000))


def queue_oldest_max_seconds() -> float:
    return _float("ALERT_QUEUE_OLDEST_MAX_SECONDS", 300.0)


def outbox_queued_max_minutes() -> float:
    return _float("ALERT_OUTBOX_QUEUED_MAX_MINUTES", 60.0)


def disk_free_min_mb() -> float:
    return _float("ALERT_DISK_FREE_MIN_MB", 1024.0)


def cert_expiry_days() -> int:
    return int(getattr(settings, "ALERT_CERT_EXPIRY_DAYS", 14))


def system_email_to() -> list[str]:
    value = getattr(settings, "ALERT_EMAIL_TO", [])
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    return [v for v in value if v]


def system_webhook() -> tuple[str, str]:
    return getattr(settings, "ALERT_WEBHOOK_URL", ""), getattr(settings, "ALERT_WEBHOOK_SECRET", "")


def background_enabled() -> bool:
    return bool(getattr(settings, "MONITORING_BACKGROUND", True))
