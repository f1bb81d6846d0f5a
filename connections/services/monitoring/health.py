"""Readiness (/readyz, `manage.py health`): database, broker, beat heartbeat age, workers seen,
migrations applied. Computed from the database in the asking process, so a dead beat (or a
watchdog that cannot run) is still noticed. No tenant data, no secrets."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from . import settings as mon


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Readiness:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def as_dict(self) -> dict:
        return {"status": "ok" if self.ok else "unavailable",
                "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks}}


def _database() -> Check:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return Check("database", True, connection.vendor)


_migrated = False  # once every migration of this code is applied, it stays so


def _migrations() -> Check:
    global _migrated
    from django.db.migrations.executor import MigrationExecutor

    if not _migrated:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            return Check("migrations", False, f"{len(pending)} not applied")
        _migrated = True
    return Check("migrations", True, "all applied")


def _broker() -> Check:
    from tenantmail.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        return Check("broker", True, conn.transport_cls if isinstance(conn.transport_cls, str) else "reachable")
    except Exception as exc:
        return Check("broker", False, f"unreachable ({type(exc).__name__})")


def _beat(now) -> Check:
    from ...models import Heartbeat

    beat = Heartbeat.objects.filter(name="beat").first()
    if beat is None:
        return Check("beat", False, "never seen")
    age = (now - beat.seen_at).total_seconds()
    return Check("beat", age <= mon.beat_stale_after(), f"last tick {age:.0f} s ago (stale after {mon.beat_stale_after():g} s)")


def _workers(now) -> Check:
    from ...models import Heartbeat

    n = Heartbeat.objects.filter(kind="worker", stopped_at__isnull=True,
                                 seen_at__gte=now - timedelta(seconds=mon.worker_stale_after())).count()
    return Check("workers", n > 0, f"{n} alive")


def readiness() -> Readiness:
    """Raises only when the database cannot be asked at all (the caller answers 503 / exit 2)."""
    now = timezone.now()
    result = Readiness([_database(), _migrations(), _broker()])
    result.checks += [_beat(now), _workers(now)]
    return result
