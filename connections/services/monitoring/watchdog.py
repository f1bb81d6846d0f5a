"""The watchdog: one pass finds every problem (findings), then alerts.sync() turns them into
alert rows and notifications. A few grouped queries, whatever the number of connections:
500 connections failing on one host are one finding that lists them.
"""
from __future__ import annotations

import logging
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import Count, ExpressionWrapper, F, Min, Q
from django.utils import timezone

from ...fields import token_problem
from ...models import AlertSettings, Heartbeat, InboundConnection, OutboxMessage, OutboxStatus, UserCredential
from . import runtime
from . import settings as mon

log = logging.getLogger(__name__)
MAX_SUBJECTS = 1000  # names listed in one alert


@dataclass
class Finding:
    key: str
    kind: str
    title: str
    tenant_id: int | None = None
    severity: str = "warning"
    detail: str = ""
    subjects: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- system

_STARTED = time.monotonic()


def system_findings(*, now: datetime, grace: bool = False) -> list[Finding]:
    """Beat, workers, queue, disk: the checks /readyz shares. With `grace` (the passes of beat
    and workers), a process younger than the stale time says nothing about the other kind yet:
    starting the worker before beat (or the reverse) raises no alert."""
    found: list[Finding] = []
    young = grace and time.monotonic() - _STARTED
    beats = {h.kind: h for h in Heartbeat.objects.filter(kind="beat")}
    beat = beats.get("beat")
    stale = now - timedelta(seconds=mon.beat_stale_after())
    if (beat is None or beat.seen_at < stale) and not (young and young < mon.beat_stale_after()):
        when = f"last tick {beat.seen_at:%Y-%m-%d %H:%M:%S} UTC" if beat else "never seen"
        found.append(Finding("system:beat", "beat_down", "Celery beat is not ticking", severity="critical",
                             detail=f"Beat ({when}) schedules every poll and send: nothing is dispatched. "
                                    "Start it: celery -A tenantmail beat."))
    workers = Heartbeat.objects.filter(kind="worker", stopped_at__isnull=True,
                                       seen_at__gte=now - timedelta(seconds=mon.worker_stale_after())).count()
    if not workers and not (young and young < mon.worker_stale_after()):
        last = Heartbeat.objects.filter(kind="worker").order_by("-seen_at").first()
        when = f"last seen {last.seen_at:%Y-%m-%d %H:%M:%S} UTC" if last else "never seen"
        found.append(Finding("system:workers", "workers_down", "No Celery worker is running", severity="critical",
                             detail=f"No worker heartbeat ({when}): polls and sends are queued but not done. "
                                    "Start one: celery -A tenantmail worker."))
    depth = queue_depth()
    if depth is not None and depth > mon.queue_depth_max():
        found.append(Finding("system:queue", "queue_growing", f"{depth} tasks wait in the queue",
                             detail=f"Above ALERT_QUEUE_DEPTH_MAX={mon.queue_depth_max()}: the workers do not keep up."))
    age = queue_oldest_age()
    if age is not None and age > mon.queue_oldest_max_seconds():
        found.append(Finding("system:queue_age", "queue_old", f"The oldest queued task has waited {age:.0f} s",
                             detail=f"Above ALERT_QUEUE_OLDEST_MAX_SECONDS={mon.queue_oldest_max_seconds():g}: "
                                    "no worker consumes, or they do not keep up."))
    free = disk_free_mb()
    if free is not None and free < mon.disk_free_min_mb():
        found.append(Finding("system:disk", "disk_low", f"Only {free:.0f} MB free under MEDIA_ROOT",
                             severity="critical",
                             detail=f"Below ALERT_DISK_FREE_MIN_MB={mon.disk_free_min_mb():g}: mails cannot be stored."))
    return found


def queue_depth() -> int | None:
    """Tasks waiting in the default queue (Redis: LLEN; the filesystem broker: files), None when
    the broker cannot be asked."""
    try:
        from tenantmail.celery import app

        queue = app.conf.task_default_queue
        with app.connection_for_read() as conn:
            channel = conn.default_channel
            client = getattr(channel, "client", None)
            if client is not None and hasattr(client, "llen"):
                return int(client.llen(queue))
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception as exc:
        log.debug("queue depth unknown: %s", exc)
        return None


PUBLISHED_HEADER = "tm_published_at"


def queue_oldest_age(*, queue: str | None = None) -> float | None:
    """Seconds the oldest task of the queue has waited (Redis: the list's tail carries the
    publish time our before_task_publish handler adds; filesystem://: the oldest message
    file's modification time), None when unknown or empty."""
    import json

    from .broker_fs import oldest_age

    try:
        from tenantmail.celery import app

        queue = queue or app.conf.task_default_queue
        with app.connection_for_read() as conn:
            client = getattr(conn.default_channel, "client", None)
            if client is None or not hasattr(client, "lindex"):
                return oldest_age(conn.default_channel, queue)
            raw = client.lindex(queue, -1)
        if raw is None:
            return None
        published = json.loads(raw).get("headers", {}).get(PUBLISHED_HEADER)
        return max(0.0, time.time() - float(published)) if published else None
    except Exception as exc:
        log.debug("queue age unknown: %s", exc)
        return None


def disk_free_mb() -> float | None:
    try:
        return shutil.disk_usage(settings.MEDIA_ROOT).free / (1024 * 1024)
    except OSError:
        return None


# --------------------------------------------------------------------------- tenants

def _failing_after(tenant_ids) -> dict[int, int]:
    return dict(AlertSettings.objects.filter(tenant_id__in=tenant_ids).values_list("tenant_id", "failing_after"))


def inbound_findings(*, now: datetime) -> list[Finding]:
    """Failing, backing off (after failing_after polls), overdue: one finding per tenant, host
    and state, listing the connections."""
    fields = ("pk", "tenant_id", "tenant__slug", "name", "host", "enabled", "last_poll_ok", "consecutive_failures",
              "backoff_until", "last_poll_at", "created_at", "next_poll_at", "schedule_kind", "schedule_every",
              "last_error")
    rows = InboundConnection.objects.filter(enabled=True).filter(
        Q(last_poll_ok=False) | Q(last_poll_at__isnull=True) | Q(last_poll_at__lt=now - timedelta(
            seconds=2 * mon.dispatch_interval())) | ~Q(schedule_kind="interval")
    ).values_list(*fields)
    groups: dict[tuple, list] = defaultdict(list)
    slugs: dict[int, str] = {}
    thresholds: dict[int, int] | None = None
    conn = InboundConnection()
    for row in rows.iterator(chunk_size=2000):
        values = dict(zip(fields, row))
        if thresholds is None:
            thresholds = _failing_after(InboundConnection.objects.values("tenant_id").distinct())
        for name in fields[1:]:
            if "__" not in name:
                setattr(conn, name, values[name])
        state = runtime.inbound_state(conn, now=now,
                                      failing_after=thresholds.get(values["tenant_id"]) or mon.failing_after_default())
        if state.state in (runtime.FAILING, runtime.OVERDUE):
            slugs[values["tenant_id"]] = values["tenant__slug"]
            groups[(values["tenant_id"], values["host"].lower(), state.state)].append((values["name"], state.detail))
    found = []
    for (tenant_id, host, state), items in groups.items():
        items.sort()
        n = len(items)
        what = "failing" if state == runtime.FAILING else "overdue (no poll for more than two intervals)"
        title = (f"{slugs[tenant_id]}: inbound {items[0][0]} on {host} is {what}" if n == 1
                 else f"{slugs[tenant_id]}: {n} inbound connections on {host} are {what}")
        detail = "\n".join(f"{name}: {text}" for name, text in items[:50])
        if n > 50:
            detail += f"\n… and {n - 50} more"
        found.append(Finding(f"t{tenant_id}:inbound_{state}:{host}", f"inbound_{state}", title, tenant_id=tenant_id,
                             severity="critical" if state == runtime.FAILING else "warning", detail=detail,
                             subjects=[name for name, _ in items[:MAX_SUBJECTS]]))
    return found


def outbound_findings(*, now: datetime) -> list[Finding]:
    """Per outbound connection: failing (at least failing_after failed sends in a row, reset by
    a delivery: monitoring/outbound.py), messages stuck in sending, the oldest queued one too
    old."""
    from ..outbound.policy import stale_cutoff
    from . import outbound

    found = []
    failing = outbound.states(now=now)
    if failing:
        from ...models import OutboundConnection

        names = {pk: (tid, slug, name) for pk, tid, slug, name in OutboundConnection.objects.filter(
            pk__in=[pk for pk, st in failing.items() if st.state == runtime.FAILING]).values_list(
            "pk", "tenant_id", "tenant__slug", "name")}
        for pk, (tenant_id, slug, name) in names.items():
            st = failing[pk]
            found.append(Finding(f"t{tenant_id}:outbox_failed:{name}", "outbox_failed",
                                 f"{slug}/{name}: outbound is failing ({st.detail.split(':', 1)[0]})",
                                 tenant_id=tenant_id, severity="critical", detail=st.detail, subjects=[name]))
    queued_cutoff = now - timedelta(minutes=mon.outbox_queued_max_minutes())
    rows = (
        OutboxMessage.objects.filter(
            Q(status=OutboxStatus.SENDING, claimed_at__lt=stale_cutoff(now))
            | Q(status=OutboxStatus.QUEUED, next_attempt_at__lt=queued_cutoff)
        )
        .values("tenant_id", "connection__tenant__slug", "connection__name", "status")
        .annotate(n=Count("pk"), oldest=Min("next_attempt_at"))
        .order_by()
    )
    for r in rows:
        where = f"{r['connection__tenant__slug']}/{r['connection__name']}"
        status, n = r["status"], r["n"]
        if status == OutboxStatus.SENDING:
            title, kind = f"{where}: {n} outbox message(s) stuck in sending", "outbox_stuck"
        else:
            title, kind = f"{where}: {n} outbox message(s) queued since {r['oldest']:%Y-%m-%d %H:%M} UTC", "outbox_old"
        found.append(Finding(f"t{r['tenant_id']}:{kind}:{r['connection__name']}", kind, title,
                             tenant_id=r["tenant_id"], subjects=[r["connection__name"]]))
    return found


def credential_findings(*, now: datetime) -> list[Finding]:
    """Credentials no key in FERNET_KEYS decrypts (one finding per tenant).

    One query reads every credential's stored tokens as they are (no field decrypts them on
    load) and only their signatures are checked: at 10,000 credentials a pass loading models
    (and each deferred secret with a query of its own) took seconds of a worker every minute."""
    raw = {f"{name}_token": ExpressionWrapper(F(name), output_field=models.BinaryField())
           for name in UserCredential.SECRET_FIELDS}
    bad: dict[int, list[str]] = defaultdict(list)
    rows = UserCredential.objects.order_by().annotate(**raw).values_list("tenant_id", "name", *raw)
    for tenant_id, name, *tokens in rows.iterator(chunk_size=2000):
        if any(token_problem(token) for token in tokens):
            bad[tenant_id].append(name)
    return [Finding(f"t{tenant_id}:credential_undecryptable", "credential_undecryptable",
                    f"{len(names)} credential(s) cannot be decrypted", tenant_id=tenant_id, severity="critical",
                    detail="Not decryptable with FERNET_KEYS: " + ", ".join(sorted(names)), subjects=sorted(names))
            for tenant_id, names in bad.items()]


def certificate_findings(*, now: datetime) -> list[Finding]:
    """Server certificates (from the last connectivity test's TLS step) expiring within
    ALERT_CERT_EXPIRY_DAYS: one finding per tenant and host."""
    from django.db import connection as db
    from django.utils.dateparse import parse_datetime

    from ...models import OutboundConnection

    soon: dict[tuple[int, str], tuple[datetime, list[str]]] = {}
    for model in (InboundConnection, OutboundConnection):
        qs = model.objects.filter(enabled=True, last_test_report__isnull=False)
        if db.vendor == "postgresql":  # extracted in the database: no report is loaded whole
            table = db.ops.quote_name(model._meta.db_table)
            with db.cursor() as cursor:
                cursor.execute(
                    f"SELECT tenant_id, host, name, jsonb_path_query_first(last_test_report::jsonb, "
                    f"'$.steps[*] ? (@.name == \"tls\").detail.not_after') #>> '{{}}' FROM {table} "
                    f"WHERE enabled AND last_test_report IS NOT NULL")
                rows = cursor.fetchall()
        else:
            rows = []
            for tenant_id, host, name, report in qs.values_list("tenant_id", "host", "name", "last_test_report"):
                tls = next((st for st in (report or {}).get("steps", []) if st.get("name") == "tls"), None)
                rows.append((tenant_id, host, name, (tls or {}).get("detail", {}).get("not_after")))
        for tenant_id, host, name, not_after in rows:
            when = parse_datetime(not_after) if isinstance(not_after, str) else None
            if when is None or when > now + timedelta(days=mon.cert_expiry_days()):
                continue
            _, names = soon.setdefault((tenant_id, host.lower()), (when, []))
            names.append(name)
    return [Finding(f"t{tenant_id}:cert_expiry:{host}", "cert_expiry",
                    f"The certificate of {host} expires {when:%Y-%m-%d}" if when > now
                    else f"The certificate of {host} expired {when:%Y-%m-%d}",
                    tenant_id=tenant_id, severity="warning" if when > now else "critical",
                    detail=f"Used by: {', '.join(sorted(names))}", subjects=sorted(names))
            for (tenant_id, host), (when, names) in soon.items()]


def find_all(*, now: datetime | None = None, grace: bool = False) -> list[Finding]:
    now = now or timezone.now()
    found = system_findings(now=now, grace=grace)
    found += inbound_findings(now=now)
    found += outbound_findings(now=now)
    found += credential_findings(now=now)
    found += certificate_findings(now=now)
    return found


# --------------------------------------------------------------------------- passes

def run_pass(*, now: datetime | None = None, grace: bool = False) -> int:
    """Find, sync the alerts, notify. Returns the number of firing findings."""
    from . import alerts, notify

    now = now or timezone.now()
    findings = find_all(now=now, grace=grace)
    changes = alerts.sync(findings=findings, now=now)
    notify.send(changes=changes, now=now)
    return len(findings)


def run_if_due(*, now: datetime | None = None, grace: bool = True) -> bool:
    """Run a pass when the last one (by any process) is older than WATCHDOG_INTERVAL; a
    conditional UPDATE makes one process win. Returns whether this process ran it."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=mon.watchdog_interval())
    with transaction.atomic():
        won = Heartbeat.objects.filter(name="watchdog", seen_at__lt=cutoff).update(seen_at=now)
        if not won and not Heartbeat.objects.filter(name="watchdog").exists():
            _, won = Heartbeat.objects.get_or_create(name="watchdog",
                                                     defaults=dict(kind="watchdog", started_at=now, seen_at=now))
    if won:
        run_pass(now=now, grace=grace)
    return bool(won)
