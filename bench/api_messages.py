#!/usr/bin/env python
"""Benchmark: GET /api/v1/messages/ on PostgreSQL with 100,000 stored messages.

Target (issue 17): p95 server time under 150 ms. The data and the request mix (first pages,
deep keyset pages both ways, searches, filters) are those of bench/messages_list.py; every
request is sent with a real API token (Authorization: Bearer) of the tenant, through the
whole Django + DRF stack in-process (test Client). The /messages/ page with the same query
runs interleaved as the reference (api, page, api, page, …), over --rounds rounds.

    .venv/bin/python bench/api_messages.py                     # 100,000 messages, 200 requests, 3 rounds
    .venv/bin/python bench/api_messages.py --messages 5000 --requests 50 --rounds 1

Creates (and drops, unless --keep) its own database `tm_bench_api` on DATABASE_URL's server.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import messages_list as ml  # noqa: E402

REFERENCE_MS = 150.0


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", default="tm_bench_api")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    server = ml.configure(args.db)
    os.environ["API_RATE_LIMIT"] = "1000000/min"
    ml.recreate_database(server, args.db)
    try:
        import django

        django.setup()
        from django.apps import apps
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client
        from django.test.utils import setup_test_environment

        from connections.models import ApiScope, Tenant
        from connections.services.access import api_tokens
        from connections.services.messages.indexes import ensure_message_indexes

        setup_test_environment()
        settings.MIGRATION_MODULES = {app.label: None for app in apps.get_app_configs()}
        call_command("migrate", run_syncdb=True, verbosity=0)
        rng = random.Random(20261121)
        data = ml.populate(args.messages, rng)
        ensure_message_indexes()
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        print(f"data: {args.messages:,} messages")

        token = api_tokens.create_token(tenant=Tenant.objects.get(slug="acme"), name="bench",
                                        scopes=[ApiScope.MESSAGES_READ]).secret
        api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
        page = Client()
        page.force_login(data["member"])
        # The member's requests (one tenant, like a token); the superuser's and the
        # two-tenant member's categories are the pages' own concern.
        mix = [(c, p) for c, u, p in ml.request_mix(data, rng, args.requests * 2) if u == data["member"]]
        mix = mix[: args.requests]
        for _, params in mix[:10]:
            api.get("/api/v1/messages/", params)
            page.get("/messages/", params)

        api_p95s, page_p95s, api_cpu, page_cpu = [], [], [], []
        per_category: dict[str, list[float]] = {}
        for round_no in range(args.rounds):
            api_ms, page_ms = [], []
            for category, params in mix:
                c0, t0 = cpu(), time.perf_counter()
                response = api.get("/api/v1/messages/", params)
                elapsed = (time.perf_counter() - t0) * 1000
                api_cpu.append(cpu() - c0)
                if response.status_code != 200:
                    print(f"unexpected {response.status_code} for {category} {params}: {response.content[:200]!r}")
                    return 1
                api_ms.append(elapsed)
                per_category.setdefault(category, []).append(elapsed)
                c0, t0 = cpu(), time.perf_counter()
                page.get("/messages/", params)
                page_ms.append((time.perf_counter() - t0) * 1000)
                page_cpu.append(cpu() - c0)
            api_p95s.append(ml.percentile(api_ms, 95))
            page_p95s.append(ml.percentile(page_ms, 95))
            print(f"round {round_no + 1}: api p95 {api_p95s[-1]:.1f} ms (p50 {statistics.median(api_ms):.1f}), "
                  f"page p95 {page_p95s[-1]:.1f} ms (p50 {statistics.median(page_ms):.1f})")

        print(f"\n{'category':28} {'n':>3} {'p50 ms':>8} {'max ms':>8}")
        for category, values in sorted(per_category.items()):
            print(f"{category:28} {len(values):3d} {statistics.median(values):8.1f} {max(values):8.1f}")
        p95 = statistics.median(api_p95s)
        print(f"\nCPU-seconds per request: api {statistics.median(api_cpu):.4f}, page {statistics.median(page_cpu):.4f}")
        load1, load5, _ = os.getloadavg()
        print(f"load average {load1:.2f} (1 min) / {load5:.2f} (5 min) on {os.cpu_count()} CPUs")
        print(f"ours (/api/v1/messages/ p95, median of {args.rounds} rounds): {p95:.1f} ms   "
              f"/messages/ page p95: {statistics.median(page_p95s):.1f} ms   target: {REFERENCE_MS:.0f} ms   "
              f"ratio: {p95 / REFERENCE_MS:.2f}x ({'meets' if p95 < REFERENCE_MS else 'MISSES'} the target)")
        return 0 if p95 < REFERENCE_MS else 2
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            ml.recreate_database(server, args.db, drop_only=True)


if __name__ == "__main__":
    sys.exit(main())
