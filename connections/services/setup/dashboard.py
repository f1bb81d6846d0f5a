"""The admin index dashboard: per tenant, readiness of the connections, polls and the outbox.

A fixed number of queries whatever the number of tenants and connections: one per model,
grouped by tenant. Scoped to the tenants the user may view.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from ...models import OutboxMessage, OutboxStatus, PollOutcome, PollRun, Readiness, Tenant
from . import checklist
from ..access import tenancy


@dataclass
class TenantSummary:
    tenant: Tenant
    ready: int = 0
    attention: int = 0
    blocked: int = 0
    polls_24h: int = 0
    failed_polls_24h: int = 0
    failing_connections: list = field(default_factory=list)  # evaluations of Blocked connections
    outbox_queued: int = 0
    outbox_failed: int = 0

    @property
    def connections(self) -> int:
        return self.ready + self.attention + self.blocked


def tenant_summaries(*, user: tenancy.UserLike, now: datetime | None = None) -> list[TenantSummary]:
    """One summary per tenant the user may view (all tenants for a superuser)."""
    now = now or timezone.now()
    tenants = list(tenancy.tenants(user, action="view").order_by("name"))
    ids = [t.pk for t in tenants]
    by_id = {t.pk: TenantSummary(t) for t in tenants}
    if not ids:
        return []
    for ev in checklist.evaluate_many(connections=checklist.connections_for(tenant_ids=ids)):
        summary = by_id[ev.connection.tenant_id]
        r = ev.readiness
        if r == Readiness.READY:
            summary.ready += 1
        elif r == Readiness.NEEDS_ATTENTION:
            summary.attention += 1
        else:
            summary.blocked += 1
            summary.failing_connections.append(ev)
    since = now - timedelta(hours=24)
    polls = (
        PollRun.objects.filter(tenant_id__in=ids, started_at__gte=since).order_by()
        .values("tenant_id")
        .annotate(n=Count("pk"), failed=Count("pk", filter=Q(outcome=PollOutcome.FAILED)))
    )
    for row in polls:
        by_id[row["tenant_id"]].polls_24h = row["n"]
        by_id[row["tenant_id"]].failed_polls_24h = row["failed"]
    outbox = (
        OutboxMessage.objects.filter(tenant_id__in=ids, status__in=[OutboxStatus.QUEUED, OutboxStatus.FAILED])
        .order_by().values("tenant_id", "status").annotate(n=Count("pk"))
    )
    for row in outbox:
        s = by_id[row["tenant_id"]]
        if row["status"] == OutboxStatus.QUEUED:
            s.outbox_queued = row["n"]
        else:
            s.outbox_failed = row["n"]
    return [by_id[i] for i in ids]
