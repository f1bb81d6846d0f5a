#!/usr/bin/env python
"""Bulk enqueue throughput on PostgreSQL: `enqueue_many()` (issue 19: target >= 2,000 messages/s).

Contenders, each storing PER_ROUND messages (~1 KB text/plain, one recipient, a subject) per
round, interleaved (the order rotates every round), medians of ROUNDS rounds:

  ours         connections.services.outbound.enqueue.enqueue_many(): every message checked
               (addresses, headers, size), its MIME built once, all rows in ONE transaction
               (bulk_create), one send task kicked on commit (here dispatch=False);
  orm          the floor: the same rows (MIME built beforehand, not timed) with a bare
               OutboxMessage.objects.bulk_create() — no checks, no MIME building;
  post-office  django-post-office 3.12's mail.send_many() (bulk_create of its Email rows;
               it builds no MIME at enqueue), in its own virtualenv and database
               (var/bench/venv-post-office, created when missing, as bench/outbound_send.py).

Prints per contender messages/s (median round) and CPU-seconds per message of the enqueuing
process, and the load average (the machine is shared: read the figures with it).

    .venv/bin/python bench/outbound_enqueue.py [--rounds 5] [--per-round 2000]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.outbound_send import PO_DB, _psql, ensure_post_office_venv  # noqa: E402

OUR_DB = "bench_tm_enqueue"
SENDER = "Bench Sender <bench-sender@example.test>"


def body_1k(i: int) -> str:
    return f"Message {i}\n\n" + "Your order has shipped; the parcel arrives within two working days.\n" * 15


def post_office_worker() -> None:
    """In the post-office virtualenv: reads {"n", "round"} lines, answers timings."""
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "post_office"],
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": PO_DB, "USER": "postgres",
                               "HOST": "127.0.0.1", "PORT": "5432"}},
        EMAIL_BACKEND="post_office.EmailBackend",
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
        USE_TZ=True, TIME_ZONE="UTC", DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        LOGGING={"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}},
    )
    django.setup()
    from django.core.management import call_command
    from post_office import mail

    call_command("migrate", verbosity=0)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        items = [dict(sender=SENDER, recipients=[f"u{i}@example.test"], subject=f"po {job['round']} {i}",
                      message=body_1k(i)) for i in range(job["n"])]
        cpu, started = time.process_time(), time.perf_counter()
        mail.send_many(items)
        print(json.dumps({"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=2000)
    parser.add_argument("--no-post-office", action="store_true", help="leave out django-post-office")
    args = parser.parse_args()

    os.environ.update({
        "TENANTMAIL_ENV_FILE": "/nonexistent", "TENANTMAIL_VAR_DIR": tempfile.mkdtemp(prefix="tm-bench-enqueue-"),
        "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "FERNET_KEYS": "ob-8dVjrl0aKu7CBUa_Q2lpaZJU4tTJ1CzCQ7P9gjuw=",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres", "TM_TEST_DB": OUR_DB,
        "CELERY_BROKER_URL": "filesystem://", "DEBUG": "false", "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "tenantmail.settings",
    })
    import django

    django.setup()
    from django.apps import apps
    from django.conf import settings
    from django.db import connection

    from connections.models import OutboundConnection, OutboxMessage, Tenant
    from connections.services.outbound.enqueue import enqueue_many, message_row
    from connections.services.outbound.prepare import prepare
    from connections.services.persistence.outbound import BATCH_SIZE

    settings.MIGRATION_MODULES = {app.label: None for app in apps.get_app_configs()}
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    po = None
    if not args.no_post_office:
        po_python = ensure_post_office_venv()
        _psql(f'DROP DATABASE IF EXISTS "{PO_DB}"')
        _psql(f'CREATE DATABASE "{PO_DB}"')
        po = subprocess.Popen([str(po_python), __file__, "--post-office-worker"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        if po is not None:
            assert json.loads(po.stdout.readline()).get("ready"), "post-office worker did not start"
        tenant = Tenant.objects.create(name="Bench", slug="bench")
        conn = OutboundConnection.objects.create(tenant=tenant, name="relay", host="127.0.0.1", port=25,
                                                 protection="off", authentication="none", default_from=SENDER)
        n = args.per_round

        def items(tag: str, rnd: int) -> list[dict]:
            return [{"to": [f"u{i}@example.test"], "subject": f"{tag} {rnd} {i}", "text": body_1k(i)}
                    for i in range(n)]

        def run_ours(rnd: int) -> tuple[float, float]:
            messages = items("ours", rnd)
            cpu, started = time.process_time(), time.perf_counter()
            result = enqueue_many(connection_id=conn.pk, messages=messages, dispatch=False)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            assert len(result) == n
            return seconds, cpu

        def run_orm(rnd: int) -> tuple[float, float]:
            from django.utils import timezone

            stamp = timezone.now()  # rows built beforehand: only the INSERTs are timed
            rows = [message_row(prepare(connection_id=conn.pk, connection=conn, **item), stamp)
                    for item in items("orm", rnd)]
            cpu, started = time.process_time(), time.perf_counter()
            OutboxMessage.objects.bulk_create(rows, batch_size=BATCH_SIZE)
            return time.perf_counter() - started, time.process_time() - cpu

        def run_post_office(rnd: int) -> tuple[float, float]:
            po.stdin.write(json.dumps({"n": n, "round": rnd}) + "\n")
            po.stdin.flush()
            answer = json.loads(po.stdout.readline())
            return answer["seconds"], answer["cpu"]

        contenders = {"ours": run_ours, "orm": run_orm}
        if po is not None:
            contenders["post-office"] = run_post_office
        names = list(contenders)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        for name in names:  # warm-up, not counted
            contenders[name](-1)
        for rnd in range(args.rounds):
            k = rnd % len(names)
            for name in names[k:] + names[:k]:
                results[name].append(contenders[name](rnd))
            print(f"round {rnd + 1}/{args.rounds}: " + ", ".join(
                f"{name} {n / results[name][-1][0]:.0f}/s" for name in names), flush=True)
    finally:
        if po is not None:
            po.stdin.close()
            po.wait(30)
            _psql(f'DROP DATABASE IF EXISTS "{PO_DB}"')
        connection.close()
        connection.creation.destroy_test_db(OUR_DB, verbosity=0)

    print()
    print(f"{args.rounds} interleaved rounds of {n} messages (~1 KB text) per contender, PostgreSQL on 127.0.0.1, "
          f"{os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.2f} (shared, loaded machine)")
    rates = {}
    for name in names:
        rates[name] = statistics.median(n / s for s, _ in results[name])
        cpu_ms = statistics.median(c for _, c in results[name]) / n * 1000
        print(f"  {name:12s} median {rates[name]:8.0f} messages/s   {cpu_ms:.3f} CPU-ms per message (enqueuing process)")
    print(f"ours: {rates['ours']:.0f} messages/s (target >= 2000: {'met' if rates['ours'] >= 2000 else 'MISSED'})")
    for name in names[1:]:
        print(f"ours / {name}: {rates['ours'] / rates[name]:.3f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--post-office-worker":
        post_office_worker()
    else:
        main()
