"""Monitoring thresholds, from Django settings (environment variables; see docs/monitoring.md)."""
from __future__ import annotations

from connections.conf import conf



def heartbeat_interval() -> float:
    """Seconds between a worker's heartbeats (and the beat's, at most)."""
    return float(conf.MONITORING_HEARTBEAT_INTERVAL)


def watchdog_interval() -> float:
    return float(conf.WATCHDOG_INTERVAL)


def dispatch_interval() -> float:
    return float(conf.POLL_DISPATCH_INTERVAL)


def beat_stale_after() -> float:
    """Beat is dead after three dispatch intervals without a tick, and never before 15 s: a
    short tick must not turn a beat that is a few seconds late into an alert."""
    return 3 * max(dispatch_interval(), 5.0)


def worker_stale_after() -> float:
    return 3 * max(heartbeat_interval(), 1.0)


def failing_after_default() -> int:
    return int(conf.ALERT_FAILING_AFTER)


def remind_every_hours_default() -> float:
    return float(conf.ALERT_REMIND_EVERY_HOURS)


def queue_depth_max() -> int:
    return int(conf.ALERT_QUEUE_DEPTH_MAX)


def queue_oldest_max_seconds() -> float:
    return float(conf.ALERT_QUEUE_OLDEST_MAX_SECONDS)


def outbox_queued_max_minutes() -> float:
    return float(conf.ALERT_OUTBOX_QUEUED_MAX_MINUTES)


def disk_free_min_mb() -> float:
    return float(conf.ALERT_DISK_FREE_MIN_MB)


def cert_expiry_days() -> int:
    return int(conf.ALERT_CERT_EXPIRY_DAYS)


def system_email_to() -> list[str]:
    value = conf.ALERT_EMAIL_TO
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    return [v for v in value if v]


def system_webhook() -> tuple[str, str]:
    return conf.ALERT_WEBHOOK_URL, conf.ALERT_WEBHOOK_SECRET


def background_enabled() -> bool:
    return bool(conf.MONITORING_BACKGROUND)
