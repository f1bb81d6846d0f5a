"""Prometheus metrics (/metrics), correct across every process (gunicorn workers, Celery's
prefork children, several hosts):

- counters live in the database (MetricCounter rows, one upsert statement per poll or send
  task) and are read at scrape time — no PROMETHEUS_MULTIPROC_DIR to share between processes;
- histograms (poll duration, dispatch lag) are counters too: _sum and one row per fixed
  bucket bound, counted per bucket and summed up at scrape time (`observe`);
- gauges (queue depth, outbox by status, alerts firing, connection states, longest waiting
  dispatch, heartbeat ages) are computed from the database at scrape time.

Labels are bounded sets (outcome, status, state, severity, le): never a tenant, connection or
host name (see docs/monitoring.md).
"""
from __future__ import annotations

import logging
from datetime import datetime

from django.db import connection as db
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ...models import Alert, AlertState, Heartbeat, InboundConnection, MetricCounter, OutboxMessage

log = logging.getLogger(__name__)
POLL_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Dispatch lag (due -> poll started): beat's tick (POLL_DISPATCH_INTERVAL), queue wait, backlog.
LAG_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
HISTOGRAMS = (("tenantmail_poll_duration_seconds", "Poll duration.", POLL_BUCKETS),
              ("tenantmail_dispatch_lag_seconds",
               "Scheduled polls: seconds from the connection's due time to the poll's start.", LAG_BUCKETS))
POLL_OUTCOMES = ("success", "partial", "failed", "locked")
SEND_OUTCOMES = ("sent", "retry", "failed", "held", "released")


def upsert_sql(values: dict[tuple[str, str], float]) -> tuple[str, list]:
    """The one statement that adds to counters (INSERT … ON CONFLICT DO UPDATE: PostgreSQL and
    SQLite); usable inside a bigger statement (the poll's bookkeeping CTE)."""
    values = {k: v for k, v in values.items() if v}
    table = db.ops.quote_name(MetricCounter._meta.db_table)
    rows = ", ".join(["(%s, %s, %s)"] * len(values))
    params = [p for (name, labels), v in values.items() for p in (name, labels, float(v))]
    return (f"INSERT INTO {table} (name, labels, value) VALUES {rows} ON CONFLICT (name, labels) "
            f"DO UPDATE SET value = {table}.value + EXCLUDED.value"), params


def _bump(values: dict[tuple[str, str], float]) -> None:
    if not any(values.values()):
        return
    sql, params = upsert_sql(values)
    try:
        with db.cursor() as cursor:
            cursor.execute(sql, params)
    except Exception:  # metrics never break a poll or a send
        log.exception("metrics: could not count")


def poll_counters(result) -> dict[tuple[str, str], float]:
    """The counter increments of one finished poll (a PollResult)."""
    return poll_values(outcome=str(result.outcome), stored=result.stored, bytes_stored=result.bytes,
                       duration_s=result.duration_ms / 1000, lag_s=getattr(result, "dispatch_lag_s", None))


def count_poll(*, outcome: str, stored: int, bytes_stored: int, duration_s: float,
               lag_s: float | None = None) -> None:
    _bump(poll_values(outcome=outcome, stored=stored, bytes_stored=bytes_stored, duration_s=duration_s, lag_s=lag_s))


def observe(values: dict[tuple[str, str], float], name: str, buckets: tuple[float, ...], value: float) -> None:
    """Add one observation of histogram `name` to `values`: its value to _sum and 1 to the one
    bucket it falls into (the smallest of the fixed `buckets` bounds >= value, else +Inf).

    Stored per bucket, not cumulative: two rows per observation instead of up to bounds + 2,
    and every poll updates these rows that all processes share. `_counters` sums them up for
    the exposition; _count is their total."""
    values[(f"{name}_sum", "")] = values.get((f"{name}_sum", ""), 0) + value
    le = next((str(bound) for bound in buckets if value <= bound), "+Inf")
    key = (f"{name}_bucket", f'le="{le}"')
    values[key] = values.get(key, 0) + 1


def poll_values(*, outcome: str, stored: int, bytes_stored: int, duration_s: float,
                lag_s: float | None = None) -> dict[tuple[str, str], float]:
    if outcome not in POLL_OUTCOMES:
        outcome = "failed"
    values = {("tenantmail_polls_total", f'outcome="{outcome}"'): 1,
              ("tenantmail_mails_stored_total", ""): stored, ("tenantmail_bytes_stored_total", ""): bytes_stored}
    observe(values, "tenantmail_poll_duration_seconds", POLL_BUCKETS, duration_s)
    if lag_s is not None:
        observe(values, "tenantmail_dispatch_lag_seconds", LAG_BUCKETS, max(0.0, lag_s))
    return values


def count_sends(*, outcomes: dict[str, int]) -> None:
    _bump({("tenantmail_send_outcomes_total", f'outcome="{o}"'): n for o, n in outcomes.items() if o in SEND_OUTCOMES})


def _labels(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, text.split(",")):
        k, _, v = part.partition("=")
        out[k] = v.strip('"')
    return out


class _Collector:
    def collect(self):
        now = timezone.now()
        yield from _counters()
        yield from _gauges(now)


def _counters():
    rows = list(MetricCounter.objects.values_list("name", "labels", "value"))
    by_name: dict[str, list] = {}
    for name, labels, value in rows:
        by_name.setdefault(name, []).append((_labels(labels), value))
    for name, help_text, label in (("tenantmail_polls", "Polls by outcome.", "outcome"),
                                   ("tenantmail_send_outcomes", "Outbox send outcomes per message.", "outcome")):
        family = CounterMetricFamily(name, help_text, labels=[label])
        for labels, value in by_name.get(name + "_total", []):
            family.add_metric([labels.get(label, "")], value)
        yield family
    for name, help_text in (("tenantmail_mails_stored", "Mails stored by polls."),
                            ("tenantmail_bytes_stored", "Bytes of mail stored by polls.")):
        family = CounterMetricFamily(name, help_text)
        family.add_metric([], sum(v for _, v in by_name.get(name + "_total", [])))
        yield family
    for name, help_text, bounds in HISTOGRAMS:
        per_bucket = {labels.get("le"): v for labels, v in by_name.get(f"{name}_bucket", [])}
        total = sum(v for _, v in by_name.get(f"{name}_sum", []))
        cumulative, running = [], 0.0
        for le in [*map(str, bounds), "+Inf"]:
            running += per_bucket.get(le, 0.0)
            cumulative.append((le, running))
        hist = HistogramMetricFamily(name, help_text)
        hist.add_metric([], cumulative, total)
        yield hist


def _gauges(now: datetime):
    from . import runtime, watchdog

    depth = watchdog.queue_depth()
    g = GaugeMetricFamily("tenantmail_queue_depth", "Tasks waiting in the Celery queue (-1: unknown).")
    g.add_metric([], -1 if depth is None else depth)
    yield g
    age = watchdog.queue_oldest_age()
    g = GaugeMetricFamily("tenantmail_queue_oldest_age_seconds", "Seconds the oldest queued task has waited.")
    g.add_metric([], age or 0.0)
    yield g
    g = GaugeMetricFamily("tenantmail_outbox_messages", "Outbox messages by status.", labels=["status"])
    for status, n in OutboxMessage.objects.values_list("status").annotate(n=Count("pk")).order_by():
        g.add_metric([status], n)
    yield g
    g = GaugeMetricFamily("tenantmail_alerts_firing", "Alerts firing by severity.", labels=["severity"])
    for severity, n in Alert.objects.filter(state=AlertState.FIRING).values_list("severity").annotate(
            n=Count("pk")).order_by():
        g.add_metric([severity], n)
    yield g
    due = InboundConnection.objects.filter(enabled=True, next_poll_at__lte=now).filter(
        Q(backoff_until__isnull=True) | Q(backoff_until__lte=now)).aggregate(oldest=Min("next_poll_at"))["oldest"]
    g = GaugeMetricFamily("tenantmail_dispatch_waiting_seconds",
                          "How long the longest-due connection has waited to be dispatched so far.")
    g.add_metric([], (now - due).total_seconds() if due else 0.0)
    yield g
    g = GaugeMetricFamily("tenantmail_inbound_connections", "Inbound connections by run-time state.", labels=["state"])
    counts = dict.fromkeys(runtime.LABELS, 0)
    for c in InboundConnection.objects.only(*runtime.STATE_FIELDS).iterator(chunk_size=2000):
        counts[runtime.inbound_state(c, now=now).state] += 1
    for state, n in counts.items():
        g.add_metric([state], n)
    yield g
    g = GaugeMetricFamily("tenantmail_outbound_connections", "Outbound connections by run-time state.",
                          labels=["state"])
    from ...models import OutboundConnection
    from .outbound import states

    enabled = dict(OutboundConnection.objects.values_list("enabled").annotate(n=Count("pk")).order_by())
    counts = {runtime.OK: enabled.get(True, 0), runtime.FAILING: 0, runtime.BACKING_OFF: 0,
              runtime.DISABLED: enabled.get(False, 0)}
    for st in states(now=now).values():
        if st.bad:
            counts[st.state] += 1
            counts[runtime.OK] -= 1
    for state, n in counts.items():
        g.add_metric([state], n)
    yield g
    g = GaugeMetricFamily("tenantmail_heartbeat_age_seconds", "Seconds since beat / the freshest worker was seen.",
                          labels=["kind"])
    for kind in ("beat", "worker"):
        latest = Heartbeat.objects.filter(kind=kind, stopped_at__isnull=True).order_by("-seen_at").first()
        g.add_metric([kind], (now - latest.seen_at).total_seconds() if latest else -1)
    yield g


def exposition() -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


def poll_finished(*, connection, result) -> None:
    """The poll's log line (`poll acme/orders: 12 stored, 0 failed, 1.3 s`); its counters are
    written with the poll's own bookkeeping (inbound/poll.py's _finish: no statement of their own)."""
    seconds = result.duration_ms / 1000
    tenant = getattr(getattr(connection, "tenant", None), "slug", connection.tenant_id)
    line = f"poll {tenant}/{connection.name}: {result.stored} stored, {result.failed} failed, {seconds:.1f} s"
    if result.outcome not in ("success", "partial"):
        line += f" ({result.outcome}: {result.error.splitlines()[0][:300] if result.error else 'no detail'})"
    (log.warning if result.outcome == "failed" else log.info)(line)


def sends_finished(*, report) -> None:
    """After a send run: the /metrics counters and the connection's send state (failed sends in
    a row, held: monitoring/outbound.py)."""
    from . import outbound

    outcomes: dict[str, int] = {}
    for o in report.outcomes:
        outcomes[o.status] = outcomes.get(o.status, 0) + 1
    count_sends(outcomes=outcomes)
    try:
        outbound.record(report=report)
    except Exception:  # monitoring never breaks a send
        log.exception("monitoring: could not record the send state of outbound #%s", report.connection_id)
