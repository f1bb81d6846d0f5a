"""Outbound run-time state (issue 16): failed sends in a row per outbound connection.

After each send run (`outbound.sending.send_due`, through `sends_finished`), `record()` updates the
connection's OutboundSendState row from the run's SendReport:

- a message delivered resets the count (to the failures after the last delivery);
- otherwise each message that failed (retry or failed) counts once — but a connection-level
  problem (the session could not be opened or went away, credentials, authentication: the
  report's `error`) counts once per run, not once per waiting message;
- held messages (a connection problem) set `held_until` (now + OUTBOX_HOLD_SECONDS);
- a run that tried nothing (nothing due, disabled) or only released messages changes nothing.

`state()` turns the row into the same RunState as inbound connections: `failing` (at least the
tenant's `failing_after` failed sends in a row), `backing_off` (held, or the last send failed),
`ok`, `disabled`. The checklist, check_setup, the operations view and the watchdog use it.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ...models import OutboundConnection, OutboundSendState
from ..outbound import policy
from . import runtime

_FAILED = ("retry", "failed", "held")


def _failures(report) -> tuple[int | None, int]:
    """(count after a reset or None when nothing was delivered, failures to add)."""
    statuses = [o.status for o in report.outcomes]
    if "sent" in statuses:
        last = len(statuses) - 1 - statuses[::-1].index("sent")
        tail = sum(1 for s in statuses[last + 1:] if s in _FAILED)
        return (min(tail, 1) if report.error else tail), 0
    failed = sum(1 for s in statuses if s in _FAILED)
    return None, (min(failed, 1) if report.error else failed)


def record(*, report, now: datetime | None = None) -> OutboundSendState | None:
    """Update the connection's send state from one send run's report (see the module doc)."""
    statuses = [o.status for o in report.outcomes]
    if not any(s != "released" for s in statuses):
        return None
    now = now or timezone.now()
    reset, added = _failures(report)
    error = report.error or next((o.detail for o in reversed(report.outcomes) if o.status in _FAILED and o.detail), "")
    with transaction.atomic():
        state, _ = OutboundSendState.objects.select_for_update().get_or_create(connection_id=report.connection_id)
        before = state.consecutive_failures
        state.consecutive_failures = reset if reset is not None else before + added
        state.last_send_at = now
        state.last_send_ok = "sent" in statuses and not state.consecutive_failures
        if state.consecutive_failures:
            state.last_error = error[:10000] or state.last_error
            if not before or reset is not None:
                state.failing_since = now
        else:
            state.last_error, state.failing_since = "", None
        state.held_until = now + timedelta(seconds=policy.hold_seconds()) if "held" in statuses else None
        state.save()
    return state


def state(connection: OutboundConnection, *, now: datetime | None = None, failing_after: int | None = None,
          send_state: OutboundSendState | None = None) -> runtime.RunState:
    """The outbound connection's run-time state (reads its OutboundSendState unless given)."""
    if not connection.enabled:
        return runtime.RunState(runtime.DISABLED)
    if send_state is None:
        cache = OutboundConnection.send_state.related  # select_related("send_state") or attach()
        send_state = (cache.get_cached_value(connection) if cache.is_cached(connection)
                      else OutboundSendState.objects.filter(connection_id=connection.pk).first())
    if send_state is None:
        return runtime.RunState(runtime.OK)
    return state_from(send_state, tenant_id=connection.tenant_id, now=now, failing_after=failing_after)


def attach(connections) -> None:
    """Load the send states of the outbound connections among `connections` that lack them, in
    one query (so that evaluating a list costs no query per connection)."""
    cache = OutboundConnection.send_state.related
    missing = [c for c in connections if isinstance(c, OutboundConnection) and not cache.is_cached(c)]
    if not missing:
        return
    found = OutboundSendState.objects.in_bulk([c.pk for c in missing])
    for c in missing:
        cache.set_cached_value(c, found.get(c.pk))


def state_from(s: OutboundSendState, *, tenant_id: int, now: datetime | None = None,
               failing_after: int | None = None) -> runtime.RunState:
    now = now or timezone.now()
    failing_after = failing_after or runtime.failing_after_for(tenant_id)
    error = (s.last_error or "").strip().splitlines()[0][:300] if s.last_error else ""
    if s.consecutive_failures >= failing_after:
        return runtime.RunState(runtime.FAILING, f"{s.consecutive_failures} failed sends in a row: {error}",
                                s.failing_since)
    if s.held_until and s.held_until > now:
        return runtime.RunState(runtime.BACKING_OFF,
                                f"held until {s.held_until:%Y-%m-%d %H:%M:%S} UTC after a connection problem: {error}",
                                s.failing_since)
    if s.consecutive_failures:
        return runtime.RunState(runtime.BACKING_OFF, f"the last send failed: {error}", s.failing_since)
    return runtime.RunState(runtime.OK)


def states(*, tenant_ids: list[int] | None = None, now: datetime | None = None) -> dict[int, runtime.RunState]:
    """Run-time state of every outbound connection with a troubled send state, by id (one query)."""
    now = now or timezone.now()
    rows = OutboundSendState.objects.filter(connection__enabled=True, consecutive_failures__gt=0)
    if tenant_ids is not None:
        rows = rows.filter(connection__tenant_id__in=tenant_ids)
    return {s.connection_id: state_from(s, tenant_id=tid, now=now)
            for s, tid in ((s, s.connection.tenant_id) for s in rows.select_related("connection").only(
                "consecutive_failures", "last_error", "failing_since", "held_until", "connection__tenant_id"))}
