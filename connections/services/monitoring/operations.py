"""The operations view's data: every connection's run-time state (worst first), beat and worker
liveness, queue depth, open alerts, and the lock monitor (mailbox locks, by which poll, since and
until when). Tenant-scoped by the caller's tenant ids (None: all)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import (
    Case,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    IntegerField,
    Q,
    Value,
    When,
)
from django.db.models.functions import Greatest
from django.utils import timezone

from ...models import (
    Alert,
    AlertState,
    Heartbeat,
    InboundConnection,
    MailboxLock,
    OutboundConnection,
    PollOutcome,
    PollRun,
)
from . import runtime
from . import settings as mon
from .outbound import states as outbound_states

ROW_LIMIT = 100  # rows shown (worst first); the counts cover every connection


@dataclass
class Row:
    kind: str
    id: int
    tenant: str
    name: str
    host: str
    state: runtime.RunState
    last_poll: datetime | None = None
    next_poll: datetime | None = None
    lag_seconds: float | None = None
    error: str = ""
    alerts: int = 0

    @property
    def last_poll_text(self) -> str:
        return f"{self.last_poll:%Y-%m-%d %H:%M:%S}" if self.last_poll else "–"

    @property
    def next_poll_text(self) -> str:
        return f"{self.next_poll:%Y-%m-%d %H:%M:%S}" if self.next_poll else "–"

    @property
    def lag_text(self) -> str:
        return f"{self.lag_seconds:.0f} s" if self.lag_seconds else "–"

    @property
    def url(self) -> str:
        return _change_url(self.kind).format(self.id)


_URLS: dict[str, str] = {}


def _change_url(kind: str) -> str:
    """The admin change URL of a connection, reversed once (for id 0) and filled in per row."""
    from django.urls import reverse

    if kind not in _URLS:
        path = reverse(f"admin:connections_{kind}connection_change", args=[0])
        _URLS[kind] = path.replace("/0/", "/{}/", 1)
    return _URLS[kind]


@dataclass
class LockRow:
    id: int
    key: str
    holder: str
    acquired_at: datetime
    expires_at: datetime
    expired: bool
    tenant_id: int | None = None
    poll: str = ""  # "tenant/connection (poll #id)"


@dataclass
class Overview:
    rows: list[Row] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0
    beat: Heartbeat | None = None
    beat_ok: bool = False
    workers: list[Heartbeat] = field(default_factory=list)
    queue_depth: int | None = None
    alerts: list[Alert] = field(default_factory=list)
    locks: list[LockRow] = field(default_factory=list)

    @property
    def count_items(self) -> list[tuple[str, int]]:
        """(label, count), worst first: "1 failing, 0 backing off, …"."""
        return [(runtime.LABELS[s], self.counts.get(s, 0)) for s in sorted(runtime.RANK, key=runtime.RANK.get)]


_IN_FIELDS = ("pk", "tenant__slug", "tenant_id", "name", "host", *runtime.STATE_FIELDS)


def state_rank_expression(now: datetime):
    """runtime.RANK of each inbound connection's state, as SQL (runtime.inbound_state's rules)."""
    from ...models import AlertSettings

    d = mon.dispatch_interval()
    # failing_after per tenant: one condition per distinct value (few), not a subquery per row.
    default = mon.failing_after_default()
    by_value: dict[int, list[int]] = {}
    for tenant_id, value in AlertSettings.objects.exclude(failing_after=default).values_list("tenant_id",
                                                                                             "failing_after"):
        by_value.setdefault(value, []).append(tenant_id)
    special = [t for ids in by_value.values() for t in ids]
    failing = Q(consecutive_failures__gte=default) & ~Q(tenant_id__in=special) if special else Q(
        consecutive_failures__gte=default)
    for value, ids in by_value.items():
        failing |= Q(tenant_id__in=ids, consecutive_failures__gte=value)
    every = ExpressionWrapper((Greatest(F("schedule_every"), Value(int(d))) * 3 + int(d)) * Value(timedelta(seconds=1)),
                              output_field=DurationField())
    failed = Q(last_poll_ok=False, consecutive_failures__gt=0)
    return Case(
        When(enabled=False, then=Value(runtime.RANK[runtime.DISABLED])),
        When(failed & failing, then=Value(runtime.RANK[runtime.FAILING])),
        When(failed, then=Value(runtime.RANK[runtime.BACKING_OFF])),
        When(Q(schedule_kind="interval") & Q(last_poll_at__isnull=False, last_poll_at__lt=Value(now) - every),
             then=Value(runtime.RANK[runtime.OVERDUE])),
        When(Q(schedule_kind="interval") & Q(last_poll_at__isnull=True, created_at__lt=Value(now) - every),
             then=Value(runtime.RANK[runtime.OVERDUE])),
        When(~Q(schedule_kind="interval") & Q(next_poll_at__lt=now - timedelta(seconds=3 * d)),
             then=Value(runtime.RANK[runtime.OVERDUE])),
        default=Value(runtime.RANK[runtime.OK]), output_field=IntegerField(),
    )


def overview(*, tenant_ids: list[int] | None, now: datetime | None = None, limit: int = ROW_LIMIT) -> Overview:
    from .watchdog import queue_depth

    now = now or timezone.now()
    out = Overview()
    alerts = Alert.objects.filter(state=AlertState.FIRING).order_by("severity", "-first_seen")
    alerts = alerts.filter(tenant_id__in=tenant_ids) if tenant_ids is not None else alerts
    out.alerts = list(alerts[:200])
    per_subject: dict[tuple[int | None, str], int] = {}
    for a in out.alerts:
        for name in a.subjects or []:
            per_subject[(a.tenant_id, name)] = per_subject.get((a.tenant_id, name), 0) + 1
    inbound = InboundConnection.objects.order_by()
    outbound = OutboundConnection.objects.order_by()
    if tenant_ids is not None:
        inbound, outbound = inbound.filter(tenant_id__in=tenant_ids), outbound.filter(tenant_id__in=tenant_ids)
    # States computed in the database (the same rules as runtime.inbound_state): counts over
    # every connection, and only the `limit` worst rows are loaded.
    inbound = inbound.annotate(state_rank=state_rank_expression(now))
    out.counts = dict.fromkeys(runtime.LABELS, 0)
    rank_to_state = {rank: state for state, rank in runtime.RANK.items()}
    for rank, n in inbound.values_list("state_rank").annotate(n=Count("pk")).order_by():
        out.counts[rank_to_state[rank]] += n
    enabled_out = dict(outbound.values_list("enabled").annotate(n=Count("pk")).order_by())
    out_states = outbound_states(tenant_ids=tenant_ids, now=now)  # failed sends in a row, held
    out.counts[runtime.OK] += enabled_out.get(True, 0) - sum(1 for st in out_states.values() if st.bad)
    out.counts[runtime.DISABLED] += enabled_out.get(False, 0)
    for st in out_states.values():
        out.counts[st.state] += st.bad
    out.total = sum(out.counts.values())
    rows: list[Row] = []
    worst = inbound.select_related("tenant").only("tenant__slug", *_IN_FIELDS[2:]).order_by(
        "state_rank", F("next_poll_at").asc(nulls_last=True), "pk")[:limit]
    for c in worst:
        state = runtime.inbound_state(c, now=now)
        lag = (now - c.next_poll_at).total_seconds() if c.enabled and c.next_poll_at and c.next_poll_at < now else None
        rows.append(Row("inbound", c.pk, c.tenant.slug, c.name, c.host, state, c.last_poll_at, c.next_poll_at,
                        lag, (c.last_error or "").split("\n", 1)[0][:200] if state.state != runtime.OK else "",
                        per_subject.get((c.tenant_id, c.name), 0)))
    troubled = [pk for pk, st in out_states.items() if st.bad]
    worst_out = outbound.annotate(troubled=Case(When(pk__in=troubled, then=Value(0)), default=Value(1),
                                                output_field=IntegerField()))
    for pk, slug, tenant_id, name, host, enabled in worst_out.order_by("troubled", "-enabled", "pk").values_list(
            "pk", "tenant__slug", "tenant_id", "name", "host", "enabled")[:limit]:
        state = out_states.get(pk) if enabled else None
        state = state or runtime.RunState(runtime.OK if enabled else runtime.DISABLED)
        rows.append(Row("outbound", pk, slug, name, host, state, alerts=per_subject.get((tenant_id, name), 0),
                        error=state.detail if state.bad else ""))
    rows.sort(key=lambda r: (runtime.RANK[r.state.state], -r.alerts, -(r.lag_seconds or 0), r.tenant, r.name))
    out.rows = rows[:limit]
    out.beat = Heartbeat.objects.filter(name="beat").first()
    out.beat_ok = bool(out.beat and out.beat.seen_at >= now - timedelta(seconds=mon.beat_stale_after()))
    out.workers = list(Heartbeat.objects.filter(kind="worker", stopped_at__isnull=True,
                                                seen_at__gte=now - timedelta(seconds=mon.worker_stale_after())))
    out.queue_depth = queue_depth()
    out.locks = locks(tenant_ids=tenant_ids, now=now)
    return out


def locks(*, tenant_ids: list[int] | None, now: datetime | None = None) -> list[LockRow]:
    """Mailbox locks held, each matched to the running poll that holds it (by host and folder).
    Locks of no visible tenant are shown to superusers (tenant_ids None) only."""
    now = now or timezone.now()
    held = list(MailboxLock.objects.order_by("acquired_at")[:500])
    if not held:
        return []
    runs = (PollRun.objects.filter(outcome=PollOutcome.RUNNING).select_related("connection", "tenant")
            .order_by("-started_at")[:2000])
    out = []
    for lock in held:
        row = LockRow(lock.pk, lock.key, lock.holder, lock.acquired_at, lock.expires_at, lock.expires_at <= now)
        for run in runs:
            c = run.connection
            if lock.key.startswith(c.host.strip().lower() + "|") and lock.key.endswith("|" + (c.folder or "INBOX")):
                row.tenant_id, row.poll = run.tenant_id, f"{run.tenant.slug}/{c.name} (poll #{run.pk})"
                break
        if tenant_ids is None or row.tenant_id in tenant_ids:
            out.append(row)
    return out


def release_lock(*, lock_id: int, tenant_ids: list[int] | None) -> LockRow | None:
    """Operator's Release: delete the lock (the poll holding it notices at its next renewal and
    stops). Only locks the caller may see; returns the released lock or None."""
    visible = {row.id: row for row in locks(tenant_ids=tenant_ids)}
    row = visible.get(lock_id)
    if row is None:
        return None
    MailboxLock.objects.filter(pk=lock_id).delete()
    return row
