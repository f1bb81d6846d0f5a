"""Benchmark: the /messages/ list page on PostgreSQL with 100,000 stored messages.

Target (issue 8): p95 server time of the list page under 150 ms, over a mix of first
pages, deep keyset pages (both directions), searches (subject, sender, text body) and
filters (connection, date range, attachments), for a tenant member, a member of two
tenants and a superuser.

Each request goes through the whole Django stack in-process (test Client: middleware,
session, auth, view, template), so the figure is the server time without the network.

    .venv/bin/python bench/messages_list.py                # 100,000 messages, 200 requests
    .venv/bin/python bench/messages_list.py --messages 5000 --requests 50   # a quick look

It creates (and drops afterwards, unless --keep) its own database `tm_bench_messages` on
DATABASE_URL's server (default postgres://postgres@127.0.0.1:5432).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REFERENCE_MS = 150.0
BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))


def configure(db_name: str) -> str:
    server = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    os.environ["TENANTMAIL_ENV_FILE"] = "/nonexistent"
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
    os.environ.setdefault("FERNET_KEYS", "ob-8dVjrl0aKu7CBUa_Q2lpaZJU4tTJ1CzCQ7P9gjuw=")
    os.environ["DATABASE_URL"] = f"{server}/{db_name}"
    os.environ["ALLOWED_HOSTS"] = "testserver,localhost"
    os.environ["DEBUG"] = "false"
    os.environ["SECURE_SSL_REDIRECT"] = "false"
    os.environ["SESSION_COOKIE_SECURE"] = "false"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("TENANTMAIL_VAR_DIR", tempfile.mkdtemp(prefix="tm-bench-messages-"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "tenantmail.settings"
    return server


def recreate_database(server: str, name: str, *, drop_only: bool = False) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


# --- Data ------------------------------------------------------------------------------

def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "po", "shi", "den", "mar", "vel", "tor", "an", "el",
                 "is", "um", "qua", "zen", "bri", "gol", "fen", "dra", "sto", "pli", "xo", "ver", "nal", "ost"]
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def zipf_sampler(rng: random.Random, words: list[str]):
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    cumulative = list(__import__("itertools").accumulate(weights))

    def sample(k: int) -> list[str]:
        return rng.choices(words, cum_weights=cumulative, k=k)

    return sample


UNINDEXED = 500  # the newest stored messages not in the body search indexes yet


def populate(total: int, rng: random.Random) -> dict:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from connections.models import InboundConnection, Membership, Role, StoredMessage, Tenant
    from connections.services.messages.search_words import words_of

    words = vocabulary(rng)
    sample = zipf_sampler(rng, words)
    people = [(f"{rng.choice(words).title()} {rng.choice(words).title()}", f"{rng.choice(words)}@{rng.choice(words)}.example")
              for _ in range(3000)]
    acme = Tenant.objects.create(name="Acme", slug="acme")
    globex = Tenant.objects.create(name="Globex", slug="globex")
    conns = [InboundConnection.objects.create(tenant=acme, name=f"acme-{i}", host="imap.acme.test") for i in range(3)]
    conns.append(InboundConnection.objects.create(tenant=globex, name="globex-0", host="imap.globex.test"))
    User = get_user_model()
    member = User.objects.create_user("reader", password="bench-password-1")
    Membership.objects.create(user=member, tenant=acme, role=Role.VIEWER)
    root = User.objects.create_superuser("root", password="bench-password-1")
    # A member of both tenants: the tenant filter is an IN list (no single-tenant index range).
    both = User.objects.create_user("reader-both", password="bench-password-1")
    Membership.objects.create(user=both, tenant=acme, role=Role.VIEWER)
    Membership.objects.create(user=both, tenant=globex, role=Role.OPERATOR)

    now = timezone.now()
    start = now - dt.timedelta(days=730)
    batch: list[StoredMessage] = []
    t0 = time.perf_counter()
    for i in range(total):
        # 90 % Acme (three connections), 10 % Globex.
        conn = conns[3] if i % 10 == 9 else conns[i % 3]
        date = start + dt.timedelta(seconds=rng.uniform(0, 730 * 86400))
        name, address = rng.choice(people)
        subject = " ".join(sample(rng.randint(3, 9))).capitalize()
        paragraphs = [" ".join(sample(rng.randint(20, 60))) for _ in range(rng.randint(1, 4))]
        text = "\n\n".join(paragraphs)
        batch.append(StoredMessage(
            tenant_id=conn.tenant_id, connection=conn, server_key=f"imap:1:{i}", uidvalidity=1, uid=i,
            message_id=f"<{i}.{rng.getrandbits(40):x}@{address.split('@')[1]}>",
            from_header=f"{name} <{address}>", to_header="team@acme.example", subject=subject,
            date=date if i % 50 else None,  # a few without Date
            size=len(text) + 800, fetched_at=date + dt.timedelta(minutes=rng.randint(1, 30)),
            raw=f"raw/bench/{i}.eml", raw_sha256=f"{i:064x}", text_body=text,
            html_body="" if i % 3 else f"<p>{text}</p>", has_attachments=rng.random() < 0.12, parsed=True,
            # The last 500 wait for the search indexer, as mails stored raw and parsed later.
            search_indexed=i < total - UNINDEXED, search_words=words_of(text) if i < total - UNINDEXED else "",
        ))
        if len(batch) == 5000:
            StoredMessage.objects.bulk_create(batch)
            batch.clear()
    if batch:
        StoredMessage.objects.bulk_create(batch)
    load_s = time.perf_counter() - t0
    return {"member": member, "root": root, "both": both, "conns": conns, "words": words, "people": people,
            "load_s": load_s, "start": start, "now": now}


# --- Requests ----------------------------------------------------------------------------

def request_mix(data: dict, rng: random.Random, count: int) -> list[tuple[str, object, dict]]:
    """(category, user, query params) — cursors are prepared outside the timed part."""
    from connections.services.messages import queries, search

    member, root, conns, words = data["member"], data["root"], data["conns"], data["words"]
    common, middling, rare = words[:10], words[50:300], words[3000:]
    mix: list[tuple[str, object, dict]] = []

    def deep_pages(user, params: dict, depth: int) -> list[dict]:
        filters, _ = search.parse_filters(params=params)
        pages, cursor = [], None
        for _ in range(depth):
            page = queries.list_messages(user=user, filters=filters, older_than=cursor)
            if not page.older:
                break
            cursor = page.older
            pages.append({**params, "older": cursor})
        return pages

    deep = deep_pages(member, {}, 40)
    deep_root = deep_pages(root, {}, 10)
    both = data["both"]
    deep_both = deep_pages(both, {}, 10)
    deep_filtered = deep_pages(member, {"connection": str(conns[1].pk), "attachments": "yes"}, 10)
    newer = [{"newer": p["older"]} for p in deep[5:25]]
    month = data["start"] + dt.timedelta(days=400)
    generators = [
        ("first page", lambda: (member, {})),
        ("first page (superuser)", lambda: (root, {})),
        ("deep page", lambda: (member, rng.choice(deep))),
        ("deep page (superuser)", lambda: (root, rng.choice(deep_root))),
        ("first page (two tenants)", lambda: (both, {})),
        ("deep page (two tenants)", lambda: (both, rng.choice(deep_both))),
        ("search (two tenants)", lambda: (both, {"q": rng.choice(middling)})),
        ("newer page", lambda: (member, rng.choice(newer))),
        ("search common word", lambda: (member, {"q": rng.choice(common)})),
        ("search middling word", lambda: (member, {"q": rng.choice(middling)})),
        ("search rare word", lambda: (member, {"q": rng.choice(rare)})),
        ("search two words", lambda: (member, {"q": f"{rng.choice(middling)} {rng.choice(common)}"})),
        ("search sender", lambda: (member, {"q": rng.choice(data["people"])[1].split("@")[0]})),
        ("filter connection", lambda: (member, {"connection": str(rng.choice(conns[:3]).pk)})),
        ("filter date range", lambda: (member, {"from": month.date().isoformat(),
                                               "to": (month + dt.timedelta(days=rng.randint(1, 60))).date().isoformat()})),
        ("filter attachments", lambda: (member, {"attachments": rng.choice(["yes", "no"])})),
        ("filters combined", lambda: (member, {"connection": str(conns[1].pk), "attachments": "yes",
                                               "from": month.date().isoformat()})),
        ("filtered deep page", lambda: (member, rng.choice(deep_filtered))),
        ("search + filter", lambda: (member, {"q": rng.choice(middling), "connection": str(conns[0].pk),
                                             "attachments": "yes"})),
    ]
    for i in range(count):
        category, make = generators[i % len(generators)]
        user, params = make()
        mix.append((category, user, params))
    rng.shuffle(mix)
    return mix


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--db", default="tm_bench_messages")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database afterwards")
    args = parser.parse_args()

    server = configure(args.db)
    recreate_database(server, args.db)
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client
        from django.test.utils import setup_test_environment
        from django.urls import reverse

        from connections.services.messages.indexes import ensure_message_indexes

        setup_test_environment()
        # Tables straight from the models (as the test suite's --nomigrations does), so the
        # benchmark does not depend on the state of the migration files.
        from django.apps import apps
        from django.conf import settings

        settings.MIGRATION_MODULES = {app.label: None for app in apps.get_app_configs()}
        call_command("migrate", run_syncdb=True, verbosity=0)
        rng = random.Random(20261121)
        data = populate(args.messages, rng)
        t0 = time.perf_counter()
        ensure_message_indexes()
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        index_s = time.perf_counter() - t0
        print(f"data: {args.messages:,} messages inserted in {data['load_s']:.1f} s; indexes + ANALYZE {index_s:.1f} s")

        clients = {}
        for user in (data["member"], data["root"], data["both"]):
            client = Client()
            client.force_login(user)
            clients[user.pk] = client
        url = reverse("messages:list")
        mix = request_mix(data, rng, args.requests)
        for category, user, params in mix[:10]:  # warm-up: connections, templates, caches
            clients[user.pk].get(url, params)

        timings: dict[str, list[float]] = {}
        all_ms: list[float] = []
        cpu = time.process_time()
        for category, user, params in mix:
            t = time.perf_counter()
            response = clients[user.pk].get(url, params)
            elapsed = (time.perf_counter() - t) * 1000
            if response.status_code != 200:
                print(f"unexpected {response.status_code} for {category} {params}")
                return 1
            timings.setdefault(category, []).append(elapsed)
            all_ms.append(elapsed)

        print(f"\n{'category':28} {'n':>3} {'p50 ms':>8} {'max ms':>8}")
        for category, values in sorted(timings.items()):
            print(f"{category:28} {len(values):3d} {statistics.median(values):8.1f} {max(values):8.1f}")
        cpu_ms = (time.process_time() - cpu) / len(mix) * 1000
        p95 = percentile(all_ms, 95)
        print(f"\nlist page over {len(all_ms)} requests: p50 {statistics.median(all_ms):.1f} ms, "
              f"p95 {p95:.1f} ms, max {max(all_ms):.1f} ms")
        print(f"ours (p95): {p95:.1f} ms   reference: {REFERENCE_MS:.0f} ms   ratio: {p95 / REFERENCE_MS:.2f}× "
              f"({'meets' if p95 < REFERENCE_MS else 'MISSES'} the target)")
        load = os.getloadavg()
        print(f"CPU of this process {cpu_ms:.1f} ms per request (the database server's not included); "
              f"load average {load[0]:.2f} (1 min) / {load[1]:.2f} (5 min) on {os.cpu_count()} CPUs")
        return 0 if p95 < REFERENCE_MS else 2
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            recreate_database(server, args.db, drop_only=True)


if __name__ == "__main__":
    sys.exit(main())
