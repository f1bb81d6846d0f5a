#!/usr/bin/env python
"""Beat-side cost of dispatching 10,000 due inbound connections.

10,000 enabled connections are due at once (plus 10,000 that are not due, disabled or
backing off). The timed part is the `dispatch_due_polls` task body as beat's worker runs it:
one SELECT claims the due ones (FOR UPDATE SKIP LOCKED), one UPDATE pushes their next run
out, and the ids are published to the broker (Redis) over one connection in chunks of 200
(`fan_out_polls`), whose workers publish one `poll_connection(id)` task each. Target: under 1 s. The reference is the naive way — one query and one
`.delay()` per connection — measured on 1,000 of them and scaled (it is too slow to run
on 10,000 at every tick).

    .venv/bin/python bench/dispatch.py [--connections 10000]
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound_common import django_setup, django_teardown, machine_note  # noqa: E402

DB = "bench_tm_dispatch"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10_000)
    args = parser.parse_args()
    django_setup(DB)
    try:
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
        InboundConnection.objects.bulk_create(rows(n // 2, next_poll_at=now + timedelta(minutes=5)), batch_size=2000)
        InboundConnection.objects.bulk_create(rows(n // 4, next_poll_at=now - timedelta(minutes=5), enabled=False),
                                              batch_size=2000)
        InboundConnection.objects.bulk_create(
            rows(n // 4, next_poll_at=now - timedelta(minutes=5), backoff_until=now + timedelta(minutes=5)),
            batch_size=2000)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("ANALYZE connections_inboundconnection")
        queue = app.conf.task_default_queue
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(queue) if hasattr(conn.default_channel, "queue_purge") else None

        started = time.perf_counter()
        dispatched = dispatch_due_polls.run()
        ours = time.perf_counter() - started
        assert dispatched == n, dispatched
        with app.connection_for_write() as conn:
            queued = conn.default_channel.client.llen(queue)
        expected = n if n <= 200 else -(-n // 200)  # fan-out chunks of POLL_DISPATCH_FANOUT
        assert queued >= expected, queued
        # The second stage (in workers, in parallel): publishing the poll tasks of one chunk.
        from connections.tasks import fan_out_polls

        chunk_ids = list(InboundConnection.objects.filter(enabled=True).values_list("pk", flat=True)[:200])
        started = time.perf_counter()
        fan_out_polls.run(chunk_ids)
        fan_out = time.perf_counter() - started

        # Reference: per connection, one query and one .delay() (own broker connection each).
        sample = min(1000, n)
        ids = list(InboundConnection.objects.filter(enabled=True, next_poll_at__gt=now).values_list("pk", flat=True)[:sample])
        started = time.perf_counter()
        for pk in ids:
            c = InboundConnection.objects.get(pk=pk)
            InboundConnection.objects.filter(pk=c.pk).update(next_poll_at=now + timedelta(minutes=30))
            poll_connection.delay(c.pk)
        naive = (time.perf_counter() - started) * n / len(ids)
        with app.connection_for_write() as conn:
            conn.default_channel.client.delete(queue)

        print(f"ours: dispatch_due_polls claimed {dispatched} due connections and handed them out in {ours:.3f} s "
              f"of beat time (target < 1 s)")
        print(f"  (second stage, in the workers: one fan_out_polls chunk of 200 poll tasks took {fan_out:.3f} s)")
        print(f"reference: one query + one .delay() per connection: {naive:.2f} s for {n} "
              f"(measured on {len(ids)}, scaled)")
        print(f"ratio ours / reference: {ours / naive:.3f}")
        print(machine_note())
    finally:
        django_teardown(DB)


if __name__ == "__main__":
    main()
