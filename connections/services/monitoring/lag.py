"""Dispatch lag: how long a scheduled poll started after its connection was due.

Observed once per scheduled poll, at its start, and counted into the
`tenantmail_dispatch_lag_seconds` histogram with the poll's other counters (the poll's own
bookkeeping statement: no extra round trip). Correct across processes because the counters
live in the database (see metrics.py).

The due time is what the previous poll stored as `next_poll_at` (the dispatcher has since
pushed that column out by the claim horizon): recomputed from the same row exactly as
polling._finish computed it — the schedule's next run after the last poll (or the creation),
and after a failed poll no earlier than the end of its backoff. It is never later than the
claim (`next_poll_at - POLL_DISPATCH_CLAIM_SECONDS`), which bounds it for a connection whose
schedule was changed since its last poll.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings


def due_at(connection) -> datetime | None:
    """When the connection was due for the poll that is starting now (None: unknown)."""
    from .. import schedule

    after = connection.last_poll_at or connection.created_at
    if after is None:
        return None
    try:
        due = schedule.next_run(schedule=schedule.Schedule.of(connection), after=after)
    except Exception:
        return None  # an invalid schedule: the admin shows why; no observation
    if connection.last_poll_ok is False and connection.backoff_until and connection.backoff_until > due:
        due = connection.backoff_until
    if connection.next_poll_at is not None:
        claimed_at = connection.next_poll_at - timedelta(
            seconds=int(getattr(settings, "POLL_DISPATCH_CLAIM_SECONDS", 1800)))
        due = min(due, claimed_at)
    return due


def dispatch_lag(*, connection, started_at: datetime, trigger: str) -> float | None:
    """Seconds from due to `started_at` for a poll beat dispatched; None for manual polls."""
    if trigger != "schedule" or not connection.enabled:
        return None
    due = due_at(connection)
    if due is None:
        return None
    return max(0.0, (started_at - due).total_seconds())
