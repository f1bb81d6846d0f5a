"""Heartbeats: beat and every worker record that they are alive (rows in Heartbeat).

- Beat: `HeartbeatScheduler` (CELERY_BEAT_SCHEDULER) records "beat" on its own ticks, so a beat
  whose scheduler stops ticking goes stale even if the process lives.
- Workers: a daemon thread started at `worker_ready` records "worker:<hostname>" every
  MONITORING_HEARTBEAT_INTERVAL seconds; a warm shutdown marks the row stopped.
- Both beat and workers run a watchdog pass when one is due (`watchdog.run_if_due`): a dead beat
  is noticed by the workers, dead workers by beat, both by /readyz.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import datetime, timedelta

from celery import signals
from celery.beat import PersistentScheduler
from django.db import close_old_connections, connections, transaction
from django.utils import timezone

from ...models import Heartbeat
from ..persistence.commits import asynchronous_commit
from . import settings as mon

log = logging.getLogger(__name__)


def record(*, name: str, kind: str, now: datetime | None = None) -> None:
    """Upsert the heartbeat row (one UPDATE when it exists), committed without waiting for
    the WAL flush: beat records it between dispatch ticks, and a slow fsync must not delay
    them (a heartbeat lost in a database crash is harmless)."""
    now = now or timezone.now()
    with transaction.atomic():
        asynchronous_commit()
        if not Heartbeat.objects.filter(name=name).update(seen_at=now, stopped_at=None):
            Heartbeat.objects.update_or_create(name=name, defaults=dict(kind=kind, started_at=now, seen_at=now,
                                                                        stopped_at=None))


def stopped(*, name: str) -> None:
    Heartbeat.objects.filter(name=name).update(stopped_at=timezone.now())


def live(*, kind: str, stale_after: float, now: datetime | None = None) -> list[Heartbeat]:
    now = now or timezone.now()
    return list(Heartbeat.objects.filter(kind=kind, stopped_at__isnull=True,
                                         seen_at__gte=now - timedelta(seconds=stale_after)))


def latest(*, kind: str) -> Heartbeat | None:
    return Heartbeat.objects.filter(kind=kind).order_by("-seen_at").first()


# --------------------------------------------------------------------------- background loop

class _Loop:
    """Every interval: heartbeat (when `name` is given), then a watchdog pass if one is due."""

    def __init__(self, *, name: str | None, kind: str) -> None:
        self.name, self.kind = name, kind
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"tenantmail-{kind}-heartbeat", daemon=True)

    def _run(self) -> None:
        from . import watchdog

        while not self.stop.is_set():
            try:
                close_old_connections()
                if self.name:
                    record(name=self.name, kind=self.kind)
                watchdog.run_if_due()
            except Exception:  # the database is away, say: try again at the next beat
                log.exception("monitoring: heartbeat/watchdog of %s failed", self.kind)
            finally:
                connections.close_all()
            self.stop.wait(mon.heartbeat_interval())


_loops: dict[str, _Loop] = {}


def start_loop(*, name: str | None, kind: str) -> None:
    if not mon.background_enabled() or kind in _loops:
        return
    loop = _loops[kind] = _Loop(name=name, kind=kind)
    loop.thread.start()


def stop_loop(*, kind: str) -> None:
    loop = _loops.pop(kind, None)
    if loop:
        loop.stop.set()


def worker_name(hostname: str | None = None) -> str:
    return f"worker:{hostname or socket.gethostname()}"


@signals.before_task_publish.connect
def _stamp_publish_time(headers=None, **kwargs) -> None:
    """Every task message carries its publish time: the watchdog reads the oldest one's age."""
    if isinstance(headers, dict):
        headers.setdefault("tm_published_at", time.time())


@signals.worker_ready.connect
def _worker_ready(sender=None, **kwargs) -> None:
    hostname = getattr(sender, "hostname", None)
    start_loop(name=worker_name(hostname), kind="worker")


@signals.worker_shutdown.connect
def _worker_shutdown(sender=None, **kwargs) -> None:
    loop = _loops.get("worker")
    if loop is None:
        return
    stop_loop(kind="worker")
    try:
        stopped(name=loop.name)
    except Exception:
        log.warning("monitoring: could not mark %s stopped", loop.name)


class HeartbeatScheduler(PersistentScheduler):
    """Celery beat's scheduler, recording the "beat" heartbeat on its ticks (at most every
    MONITORING_HEARTBEAT_INTERVAL seconds) and running the watchdog loop (no own heartbeat)."""

    _last_beat = 0.0

    def setup_schedule(self) -> None:
        super().setup_schedule()
        start_loop(name=None, kind="beat")

    def tick(self, *args, **kwargs) -> float:
        interval = super().tick(*args, **kwargs)
        now = time.monotonic()
        if now - self._last_beat >= min(mon.heartbeat_interval(), mon.dispatch_interval()):
            try:
                close_old_connections()
                record(name="beat", kind="beat")
                self._last_beat = now
            except Exception:
                log.exception("monitoring: could not record the beat heartbeat")
        # Wake up often enough to keep the heartbeat fresh even when nothing is due.
        return min(interval, mon.heartbeat_interval())
