#!/usr/bin/env python
"""Dispatching 10,000 due inbound connections, timed until every poll task is published.

10,000 enabled connections are due at once (plus 10,000 that are not due, disabled or
backing off). Ours: beat's `dispatch_due_polls` task body — one SELECT claims the due ones
(FOR UPDATE SKIP LOCKED), one UPDATE pushes their next run out, the ids go to the dispatch
queue in chunks of POLL_DISPATCH_FANOUT (`fan_out_polls`) — and a real Celery worker
(default settings, consuming the dispatch queue) publishing one `poll_connections(ids)` task
per batch of POLL_TASK_BATCH ids. The clock stops when all poll tasks are in the poll queue
(Redis). The
reference is the naive way — one query, one UPDATE and one `.delay()` per connection —
measured on 1,000 connections and scaled (it is too slow to run on 10,000 every round).
Rounds interleave (ours, reference, ours, …); medians; CPU seconds of this process per
connection; the load average. Target: under 1 s.

    .venv/bin/python bench/dispatch.py [--connections 10000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound_common import ROOT, django_setup, django_teardown, machine_note, median  # noqa: E402

DB = "bench_tm_dispatch"


def start_dispatch_worker(queue: str) -> subprocess.Popen:
    env = {**os.environ}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tenantmail", "worker", "-Q", queue, "--loglevel", "WARNING",
         "--concurrency", "2", "--without-gossip", "--without-mingle", "--hostname", f"bench-{uuid.uuid4().hex[:6]}@%h"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return proc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    django_setup(DB)
    worker = None
    try:
        from django.conf import settings
        from django.db import connection
        from django.utils import timezone

        from connections.models import InboundConnection, Tenant
        from connections.tasks import dispatch_due_polls, poll_connection
        from tenantmail.celery import app

        tenant = Tenant.objects.create(name="Bench", slug="bench")
        now = timezone.now()
        n = args.connections

        def rows(count: int, **fields):
            return [InboundConnection(tenant=tenant, name=f"c-{uuid.uuid4().hex[:12]}", host="imap.example.test",
                                      credential_name="x", **fields) for _ in range(count)]

        InboundConnection.objects.bulk_create(rows(n, next_poll_at=now - timedelta(seconds=30)), batch_size=2000)
        due_ids = list(InboundConnection.objects.values_list("pk", flat=True))
        InboundConnection.objects.bulk_create(rows(n // 2, next_poll_at=now + timedelta(minutes=5)), batch_size=2000)
        InboundConnection.objects.bulk_create(rows(n // 4, next_poll_at=now - timedelta(minutes=5), enabled=False),
                                              batch_size=2000)
        InboundConnection.objects.bulk_create(
            rows(n // 4, next_poll_at=now - timedelta(minutes=5), backoff_until=now + timedelta(minutes=5)),
            batch_size=2000)
        naive_ids = list(InboundConnection.objects.filter(next_poll_at__gt=now).values_list("pk", flat=True)[:1000])
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE connections_inboundconnection")
        queues = settings.TENANTMAIL_QUEUES
        tasks = -(-n // settings.POLL_TASK_BATCH)  # poll_connections tasks, one per batch
        worker = start_dispatch_worker(queues["dispatch"])

        def llen(queue: str) -> int:
            with app.connection_for_write() as conn:
                return conn.default_channel.client.llen(queue)

        def purge() -> None:
            with app.connection_for_write() as conn:
                for queue in (queues["poll"], queues["dispatch"], settings.CELERY_TASK_DEFAULT_QUEUE):
                    conn.default_channel.client.delete(queue)

        def ours_round() -> tuple[float, float, float]:
            InboundConnection.objects.filter(pk__in=due_ids).update(next_poll_at=timezone.now() - timedelta(seconds=30))
            purge()
            started, cpu = time.perf_counter(), time.process_time()
            dispatched = dispatch_due_polls.run()
            beat = time.perf_counter() - started
            assert dispatched == n, dispatched
            deadline = time.monotonic() + 120
            while llen(queues["poll"]) < tasks:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {llen(queues['poll'])} of {tasks} poll tasks published after 120 s")
                time.sleep(0.005)
            return time.perf_counter() - started, beat, time.process_time() - cpu

        def naive_round() -> tuple[float, float]:
            later = timezone.now() + timedelta(minutes=30)
            started, cpu = time.perf_counter(), time.process_time()
            for pk in naive_ids:
                c = InboundConnection.objects.get(pk=pk)
                InboundConnection.objects.filter(pk=c.pk).update(next_poll_at=later)
                poll_connection.delay(c.pk)
            scale = n / len(naive_ids)
            return (time.perf_counter() - started) * scale, (time.process_time() - cpu) * scale

        # Warm-up (worker ready, imports, connections): not counted.
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if time.monotonic() > deadline:
                raise SystemExit("the dispatch worker did not start")
        ours_round()
        ours, beats, ours_cpu, naive, naive_cpu = [], [], [], [], []
        for _ in range(args.rounds):
            total, beat, cpu = ours_round()
            ours.append(total), beats.append(beat), ours_cpu.append(cpu)
            wall, cpu = naive_round()
            naive.append(wall), naive_cpu.append(cpu)
        purge()
        o, r = median(ours), median(naive)
        print(f"ours: {n} due connections claimed and all {tasks} poll tasks (batches of "
              f"{settings.POLL_TASK_BATCH}) published in {o:.3f} s "
              f"(median of {args.rounds}; target < 1 s); beat's part {median(beats):.3f} s; "
              f"beat-side CPU {median(ours_cpu) / n * 1e6:.1f} µs per connection (+ the worker's fan-out)")
        print(f"reference: one query + one UPDATE + one .delay() per connection: {r:.2f} s for {n} "
              f"(measured on {len(naive_ids)}, scaled), CPU {median(naive_cpu) / n * 1e6:.1f} µs per connection")
        print(f"ratio ours / reference: {o / r:.3f}")
        print(machine_note())
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        django_teardown(DB)


if __name__ == "__main__":
    main()
