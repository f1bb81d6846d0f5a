"""The push state of a connection, for operators: the checklist item, check_setup --json and
the admin page (connected since, last event, which run_idle process holds it)."""
from __future__ import annotations

from django.utils import timezone

from ...models import InboundConnection, Protocol, PushLease, PushState
from ..common import dates


def lease_of(connection: InboundConnection) -> PushLease | None:
    try:
        return connection.push_lease
    except PushLease.DoesNotExist:
        return None


def push_state(connection: InboundConnection) -> dict | None:
    """None when push is off; else the state as plain JSON-ready values."""
    if not connection.push:
        return None
    lease = lease_of(connection)
    if lease is None or not lease.holder:
        state, holder = PushState.WAITING.value, ""
    else:
        state, holder = lease.state, lease.holder
        if lease.expires_at is not None and lease.expires_at < timezone.now():
            state = "stale"
    iso = lambda v: v.isoformat() if v else None  # noqa: E731
    return {
        "state": state,
        "holder": holder,
        "connected_since": iso(lease.connected_since) if lease else None,
        "last_event_at": iso(lease.last_event_at) if lease else None,
        "last_event": lease.last_event if lease else "",
        "last_error": lease.last_error if lease else "",
    }


def describe(connection: InboundConnection) -> tuple[str, str]:
    """(level, text) for the checklist and the admin: level "ok" or "warn"."""
    if connection.protocol != Protocol.IMAP:
        return "warn", "Push (IMAP IDLE) works with IMAP only: this POP3 connection is polled on its schedule."
    info = push_state(connection) or {}
    lease = lease_of(connection)
    state = info.get("state")
    fallback = " The schedule keeps polling meanwhile."
    if state == PushState.IDLE:
        last = (f"; last event {dates.short(lease.last_event_at, seconds=True)} ({lease.last_event})"
                if lease and lease.last_event_at else "; no event yet")
        return "ok", f"IDLE session connected since {dates.short(lease.connected_since, seconds=True)}{last}."
    if state == PushState.UNSUPPORTED:
        return "warn", f"The server does not offer IDLE: polled on the schedule only. ({info['last_error']})"
    if state == PushState.RETRYING:
        return "warn", f"The IDLE session failed and is retried with backoff: {info['last_error']}.{fallback}"
    if state == "stale":
        return "warn", (f"The run_idle process {info['holder']} stopped renewing its lease; another process "
                        f"takes over.{fallback}")
    if state == PushState.CONNECTING:
        return "ok", "The IDLE session is connecting."
    return "warn", f"No run_idle process holds this connection: start `manage.py run_idle`.{fallback}"
