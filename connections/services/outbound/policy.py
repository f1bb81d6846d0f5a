"""The outbox's timing rules, read from the settings (connections/conf.py, docs/outbound.md):
attempts and retry backoff, the hold after a connection problem, the worker's lease, when a
claim is stale, how long one send task goes on. Each setting is read here and only here."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from connections.conf import conf


def max_attempts() -> int:
    return max(1, int(conf.OUTBOX_MAX_ATTEMPTS))


def retry_base() -> float:
    return float(conf.OUTBOX_RETRY_BASE_SECONDS)


def backoff_seconds(attempts: int) -> float:
    """Exponential: base, 2×base, 4×base … capped; `attempts` is the number already made."""
    return min(retry_base() * (2 ** max(0, attempts - 1)), float(conf.OUTBOX_RETRY_MAX_SECONDS))


def hold_seconds() -> float:
    """Wait after a connection-level problem (credentials, TLS, authentication)."""
    return float(conf.OUTBOX_HOLD_SECONDS)


def stale_minutes() -> float:
    return float(conf.OUTBOX_STALE_AFTER_MINUTES)


def stale_cutoff(now: datetime | None = None) -> datetime:
    """Messages in `sending` claimed before this are stale (their worker is presumed gone)."""
    return (now or timezone.now()) - timedelta(minutes=stale_minutes())


def lease_seconds() -> float:
    return max(1.0, float(conf.OUTBOX_LEASE_SECONDS))


def lease_until(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(seconds=lease_seconds())


def time_budget() -> float:
    """How long one send task keeps opening new SMTP sessions."""
    return float(conf.OUTBOX_SEND_TIME_BUDGET)


def parallel_sessions() -> int:
    return max(1, int(conf.OUTBOX_PARALLEL_SESSIONS))


def task_expiry() -> float:
    """A send task that waited longer than this is dropped: the beat dispatcher has queued a
    newer one by then, so a stopped worker does not face a pile of duplicates at restart."""
    return max(60.0, 6 * float(conf.OUTBOX_DISPATCH_INTERVAL))
