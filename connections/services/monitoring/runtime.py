"""A connection's run-time state: ok, failing, backing_off, overdue, disabled.

Computed from the poll state the connection row already carries (no extra query), so the
admin lists, the checklist, check_setup, the watchdog and the operations view all agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from ...models import InboundConnection, ScheduleKind
from . import settings as mon

OK, FAILING, BACKING_OFF, OVERDUE, DISABLED = "ok", "failing", "backing_off", "overdue", "disabled"
LABELS = {OK: "OK", FAILING: "failing", BACKING_OFF: "backing off", OVERDUE: "overdue", DISABLED: "disabled"}
# Worst first (the operations view's order).
RANK = {FAILING: 0, BACKING_OFF: 1, OVERDUE: 2, OK: 3, DISABLED: 4}


@dataclass(frozen=True)
class RunState:
    state: str
    detail: str = ""
    since: datetime | None = None

    @property
    def label(self) -> str:
        return LABELS[self.state]

    @property
    def bad(self) -> bool:
        return self.state in (FAILING, BACKING_OFF, OVERDUE)


_thresholds: tuple[float, dict[int, int]] = (0.0, {})


def failing_after_for(tenant_id: int) -> int:
    """The tenant's `alerts.failing_after` (one query for all tenants, kept for 5 seconds)."""
    global _thresholds
    import time

    from ...models import AlertSettings

    if time.monotonic() - _thresholds[0] > 5:
        _thresholds = (time.monotonic(), dict(AlertSettings.objects.values_list("tenant_id", "failing_after")))
    return _thresholds[1].get(tenant_id) or mon.failing_after_default()


def overdue_cutoff(connection, now: datetime) -> datetime | None:
    """A connection whose last poll (or creation) is older than this is overdue: due for more
    than two intervals without a poll. Interval schedules only; weekly/cron ones use
    next_poll_at (see docs/monitoring.md)."""
    if getattr(connection, "schedule_kind", ScheduleKind.INTERVAL) != ScheduleKind.INTERVAL:
        return None
    every = max(float(connection.schedule_every or 0), mon.dispatch_interval())
    return now - timedelta(seconds=3 * every + mon.dispatch_interval())


def inbound_state(connection: InboundConnection, *, now: datetime | None = None,
                  failing_after: int | None = None) -> RunState:
    now = now or timezone.now()
    if not connection.enabled:
        return RunState(DISABLED)
    failing_after = failing_after or failing_after_for(connection.tenant_id)
    failures = connection.consecutive_failures or 0
    error = (connection.last_error or "").strip().splitlines()[0][:300] if connection.last_error else ""
    if failures and connection.last_poll_ok is False:
        if failures >= failing_after:
            return RunState(FAILING, f"{failures} failed polls in a row: {error}", connection.last_poll_at)
        # The last poll failed: never OK, even once the backoff window has passed.
        until = f"retry at {connection.backoff_until:%Y-%m-%d %H:%M:%S} UTC: " if connection.backoff_until else ""
        return RunState(BACKING_OFF, f"{until}{error}", connection.last_poll_at)
    cutoff = overdue_cutoff(connection, now)
    reference = connection.last_poll_at or connection.created_at
    if cutoff is not None and reference is not None and reference < cutoff:
        return RunState(OVERDUE, f"no poll since {reference:%Y-%m-%d %H:%M:%S} UTC", reference)
    if cutoff is None and connection.next_poll_at and connection.next_poll_at < now - timedelta(
            seconds=3 * mon.dispatch_interval()):
        return RunState(OVERDUE, f"due since {connection.next_poll_at:%Y-%m-%d %H:%M:%S} UTC", connection.next_poll_at)
    return RunState(OK)


def state_of(connection, *, now: datetime | None = None) -> RunState:
    """Inbound: from its poll state; outbound: from its send state (failed sends in a row,
    held after a connection problem: monitoring/outbound.py)."""
    if isinstance(connection, InboundConnection):
        return inbound_state(connection, now=now)
    from .outbound import state

    return state(connection, now=now)


# The columns inbound_state() reads (for .only() in bulk reads).
STATE_FIELDS = ("enabled", "last_poll_ok", "consecutive_failures", "backoff_until", "last_poll_at", "created_at",
                "next_poll_at", "schedule_kind", "schedule_every", "last_error")


def _forget_thresholds(**kwargs) -> None:
    global _thresholds
    _thresholds = (0.0, {})


def _connect_signals() -> None:
    from django.db.models.signals import post_delete, post_save

    from ...models import AlertSettings

    post_save.connect(_forget_thresholds, sender=AlertSettings, dispatch_uid="tm-alert-thresholds-save")
    post_delete.connect(_forget_thresholds, sender=AlertSettings, dispatch_uid="tm-alert-thresholds-delete")


_connect_signals()
