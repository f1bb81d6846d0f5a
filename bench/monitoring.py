"""Benchmark: monitoring at 10,000 connections on PostgreSQL (issue 16).

Targets: one watchdog pass (find every problem, sync the alerts, notify) over 10,000 inbound
connections < 1 s; the operations page (admin, whole Django stack in-process) p95 < 300 ms.

Interleaved with a reference (ours, ref, ours, …), medians of the rounds, CPU seconds per
connection, and the load average (the machine is shared):
- watchdog reference: the naive pass — every connection loaded as a model instance and its
  state computed one by one (what a first implementation would do);
- operations page reference: the existing inbound connection list of the admin (100 rows a page).

    .venv/bin/python bench/monitoring.py [--connections 10000] [--rounds 5] [--requests 40]

It creates and drops its own database `tm_bench_monitoring` on BENCH_PG_URL's server.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
DB = "tm_bench_monitoring"


def configure() -> str:
    server = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    os.environ["TENANTMAIL_ENV_FILE"] = "/nonexistent"
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
    os.environ.setdefault("FERNET_KEYS", "ob-8dVjrl0aKu7CBUa_Q2lpaZJU4tTJ1CzCQ7P9gjuw=")
    os.environ["DATABASE_URL"] = f"{server}/{DB}"
    os.environ["ALLOWED_HOSTS"] = "testserver,localhost"
    os.environ["DEBUG"] = "false"
    os.environ["SECURE_SSL_REDIRECT"] = "false"
    os.environ["SESSION_COOKIE_SECURE"] = "false"
    os.environ["LOG_LEVEL"] = "ERROR"
    os.environ["CELERY_BROKER_URL"] = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
    os.environ["CELERY_TASK_DEFAULT_QUEUE"] = "tm-bench-monitoring"
    os.environ.setdefault("TENANTMAIL_VAR_DIR", tempfile.mkdtemp(prefix="tm-bench-monitoring-"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "tenantmail.settings"
    return server


def recreate(server: str, *, drop_only: bool = False) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{DB}"')


def populate(n: int) -> None:
    """10 tenants; per tenant: a quarter failing on one host, some overdue, the rest fine."""
    from datetime import timedelta

    from django.utils import timezone

    from connections.models import InboundConnection, Tenant

    now = timezone.now()
    tenants = [Tenant.objects.create(slug=f"t{i}", name=f"Tenant {i}") for i in range(10)]
    rows = []
    for i in range(n):
        t = tenants[i % 10]
        kind = i % 8
        fields = dict(tenant=t, name=f"box-{i:05d}", host=f"imap{i % 50}.example", port=993,
                      last_poll_at=now, last_poll_ok=True, next_poll_at=now + timedelta(minutes=5))
        if kind < 2:  # failing on a closed port
            fields.update(host="imap-down.example", last_poll_ok=False, consecutive_failures=5,
                          backoff_until=now + timedelta(minutes=4),
                          last_error="Cannot connect to imap-down.example:993: Connection refused")
        elif kind == 2:  # overdue
            fields.update(last_poll_at=now - timedelta(hours=3), next_poll_at=now - timedelta(hours=2))
        rows.append(InboundConnection(**fields))
    InboundConnection.objects.bulk_create(rows, batch_size=2000)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def naive_pass() -> int:
    from connections.models import InboundConnection
    from connections.services.monitoring import runtime

    bad = 0
    for c in InboundConnection.objects.select_related("tenant").all():
        if runtime.inbound_state(c).bad:
            bad += 1
    return bad


def timed(fn) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    server = configure()
    recreate(server)
    try:
        import django

        django.setup()
        from django.conf import settings

        # Admin pages need static URLs only (no collectstatic here).
        settings.STORAGES = {**settings.STORAGES, "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.test import Client

        from connections.services.monitoring import watchdog

        call_command("migrate", verbosity=0)
        populate(args.connections)
        n = args.connections
        print(f"monitoring bench: {n} inbound connections, PostgreSQL; load average {os.getloadavg()}")
        watchdog.run_pass()  # warm-up: creates the alerts (later passes update them)
        ours, ref, ours_cpu, ref_cpu = [], [], [], []
        for _ in range(args.rounds):
            w, c = timed(watchdog.run_pass)
            ours.append(w)
            ours_cpu.append(c)
            w, c = timed(naive_pass)
            ref.append(w)
            ref_cpu.append(c)
        print(f"watchdog pass: median {statistics.median(ours):.3f} s (target < 1 s), "
              f"CPU {statistics.median(ours_cpu) / n * 1e6:.1f} µs/connection; "
              f"reference (naive per-instance loop, no alerts): median {statistics.median(ref):.3f} s, "
              f"CPU {statistics.median(ref_cpu) / n * 1e6:.1f} µs/connection; "
              f"ratio ours/ref {statistics.median(ours) / statistics.median(ref):.3f}")

        user = User.objects.create_superuser("bench", "bench@example.test", "pw")
        client = Client()
        client.force_login(user)
        pages = {"ours": "/admin/connections/alert/operations/", "ref": "/admin/connections/inboundconnection/"}
        for url in pages.values():
            assert client.get(url).status_code == 200, url
        times: dict[str, list[float]] = {"ours": [], "ref": []}
        for _ in range(args.requests):
            for name, url in pages.items():
                t0 = time.perf_counter()
                response = client.get(url)
                times[name].append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200
        print(f"operations page: p95 {percentile(times['ours'], 95):.0f} ms, median "
              f"{statistics.median(times['ours']):.0f} ms over {args.requests} requests (target p95 < 300 ms); "
              f"reference (admin inbound list, 100 rows): p95 {percentile(times['ref'], 95):.0f} ms, median "
              f"{statistics.median(times['ref']):.0f} ms")
        print(f"load average after: {os.getloadavg()}")
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            recreate(server, drop_only=True)


if __name__ == "__main__":
    main()
