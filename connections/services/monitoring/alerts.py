"""Alerts: the state machine of alert rows.

    (finding appears) -> firing --(finding gone)--> resolved
    firing --acknowledge (operator)--> firing, acknowledged (no reminders)

`key` dedups (at most one firing alert per key, a DB constraint). sync() is called with every
finding of a watchdog pass and returns what to notify: alerts that fired, resolved, or are
due a reminder (at most every remind_every_hours).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from ...models import Alert, AlertSettings, AlertState
from . import settings as mon
from .watchdog import Finding

FIRED, RESOLVED, REMINDER = "fired", "resolved", "reminder"


@dataclass
class Changes:
    """Alerts to notify, by event (fired, resolved, reminder)."""

    events: list[tuple[str, Alert]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events)

    def by_tenant(self) -> dict[int | None, list[tuple[str, Alert]]]:
        out: dict[int | None, list[tuple[str, Alert]]] = {}
        for event, alert in self.events:
            out.setdefault(alert.tenant_id, []).append((event, alert))
        return out


def _remind_hours(tenant_ids: set) -> dict[int, float]:
    return dict(AlertSettings.objects.filter(tenant_id__in=tenant_ids).values_list("tenant_id", "remind_every_hours"))


def sync(*, findings: list[Finding], now: datetime | None = None) -> Changes:
    now = now or timezone.now()
    changes = Changes()
    wanted = {f.key: f for f in findings}
    with transaction.atomic():
        firing = {a.key: a for a in Alert.objects.select_for_update().filter(state=AlertState.FIRING)}
        remind = _remind_hours({a.tenant_id for a in firing.values()} | {f.tenant_id for f in findings})
        updates, creates = [], []
        for key, finding in wanted.items():
            alert = firing.get(key)
            if alert is None:
                creates.append(Alert(
                    tenant_id=finding.tenant_id, key=key, kind=finding.kind, severity=finding.severity,
                    title=finding.title[:300], detail=finding.detail, subjects=finding.subjects,
                    first_seen=now, last_seen=now, last_notified_at=now, notified_state=AlertState.FIRING,
                ))
                continue
            alert.last_seen, alert.title, alert.detail = now, finding.title[:300], finding.detail
            alert.subjects, alert.severity = finding.subjects, finding.severity
            hours = remind.get(alert.tenant_id) or mon.remind_every_hours_default()
            if (alert.acknowledged_at is None and alert.last_notified_at
                    and alert.last_notified_at <= now - timedelta(hours=hours)):
                alert.last_notified_at = now
                changes.events.append((REMINDER, alert))
            updates.append(alert)
        resolved = [a for key, a in firing.items() if key not in wanted]
        for alert in resolved:
            alert.state, alert.resolved_at, alert.last_seen = AlertState.RESOLVED, now, now
            alert.last_notified_at, alert.notified_state = now, AlertState.RESOLVED
            changes.events.append((RESOLVED, alert))
        Alert.objects.bulk_update(
            updates + resolved,
            ["state", "resolved_at", "last_seen", "title", "detail", "subjects", "severity", "last_notified_at",
             "notified_state"], batch_size=500,
        )
        try:
            with transaction.atomic():
                Alert.objects.bulk_create(creates, batch_size=500)
        except IntegrityError:  # another pass created one of them first: the next pass updates it
            creates = []
        changes.events += [(FIRED, a) for a in creates]
    return changes


def acknowledge(*, alert_ids, user) -> int:
    """Operators acknowledge: the alert stays firing (and resolves by itself) but reminds no more."""
    return Alert.objects.filter(pk__in=list(alert_ids), state=AlertState.FIRING, acknowledged_at__isnull=True).update(
        acknowledged_at=timezone.now(), acknowledged_by=user)


def firing_count_by_tenant() -> dict[int | None, int]:
    from django.db.models import Count

    return {r["tenant_id"]: r["n"] for r in Alert.objects.filter(state=AlertState.FIRING)
            .values("tenant_id").annotate(n=Count("pk")).order_by()}
