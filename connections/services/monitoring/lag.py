"""Dispatch lag: how long a scheduled poll started after its connection was due.

The dispatcher's claim (inbound.dispatch.claim_due, one UPDATE) keeps each claimed connection's due time
— its `next_poll_at` then, which already includes a failed poll's backoff; "now" for one never
scheduled — in `dispatched_due_at`, in the same statement that pushes `next_poll_at` out by the
claim horizon. The poll observes `started - dispatched_due_at` once, at its start, and counts it
into the `tenantmail_dispatch_lag_seconds` histogram with its other counters (the poll's own
bookkeeping statement: no extra round trip; correct across processes because the counters live
in the database, see metrics.py). It covers beat's tick, the fan-out and the queue wait.
"""
from __future__ import annotations

from datetime import datetime


def dispatch_lag(*, connection, started_at: datetime, trigger: str) -> float | None:
    """Seconds from due to `started_at` for a poll the dispatcher claimed; None for manual
    polls or a connection never claimed."""
    due = getattr(connection, "dispatched_due_at", None)
    if trigger != "schedule" or due is None:
        return None
    return max(0.0, (started_at - due).total_seconds())
