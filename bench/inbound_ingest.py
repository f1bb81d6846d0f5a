#!/usr/bin/env python
"""Inbound ingest throughput against the real Dovecot of the test fixture, interleaved rounds.

2,000 mails of about 20 KB, one in ten with a 200 KB attachment, appended once to one
mailbox (IMAP over implicit TLS on loopback). Every round runs the contenders in turn
(bare, raw, full, reference; the order rotates each round) on the same mailbox:

  bare imaplib   login, SELECT, UID SEARCH ALL, UID FETCH BODY.PEEK[] in UID ranges of 200
                 (keeps nothing): the protocol's cost.
  raw ingest     TenantMail's poll() with parsing deferred: fetched, raw bytes stored (file
                 storage + sha256), rows committed per batch, post-processed (mark as read).
                 Goal: >= 0.7x bare.
  full           poll() as configured by default — also parsed into headers, bodies and
                 attachments (files + rows) — AND the search indexing it leaves behind
                 (index_messages_for_search, timed right after the poll: PostgreSQL computes
                 the trigrams then). Goal: >= 10x the reference.
  reference      django-mailbox's getmail (Mailbox.get_new_mail(), in its own virtualenv
                 var/bench/venv-django-mailbox — created with pip from PyPI when missing —
                 and its own database), which stores one mail at a time. If it cannot be
                 installed, a comparable one-mail-at-a-time ingester (imaplib FETCH per mail,
                 email.message_from_bytes, one row + commit per mail) runs instead, and the
                 output says so.

Each figure is the median over the rounds (>= 3) of mails/s; CPU seconds per mail of the
ingesting process (with its helper processes) beside it — the database server and Dovecot
are not in it; the load average at the end.

    .venv/bin/python bench/inbound_ingest.py [--mails 2000] [--rounds 3] [--only bare,raw]

--only runs some contenders (while iterating on one of them); the default runs all four.
"""
from __future__ import annotations

import argparse
import imaplib
import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound_common import (  # noqa: E402
    ROOT, django_setup, django_teardown, machine_note, mail_20k, make_connection, median, start_servers,
)

DB = "bench_tm_inbound_ingest"
DJM_DB = "bench_tm_djmailbox"
DJM_VENV = ROOT / "var" / "bench" / "venv-django-mailbox"
DJM_REQUIREMENTS = ["Django==5.2.19", "django-mailbox", "psycopg[binary]==3.2.10"]


def cpu_now() -> float:
    """CPU seconds of this process and its reaped children (the poll's helper processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bare_imaplib(servers, address: str, password: str) -> tuple[int, float]:
    context = ssl.create_default_context(cafile=servers.ca_file)
    started = time.perf_counter()
    imap = imaplib.IMAP4_SSL(servers.host, servers.ports["imaps"], ssl_context=context)
    imap.login(address, password)
    imap.select("INBOX", readonly=True)
    uids = [int(u) for u in imap.uid("SEARCH", "ALL")[1][0].split()]
    n = 0
    for start in range(0, len(uids), 200):
        chunk = uids[start:start + 200]
        typ, data = imap.uid("FETCH", f"{chunk[0]}:{chunk[-1]}", "(BODY.PEEK[])")
        n += sum(1 for part in data if isinstance(part, tuple))
    imap.logout()
    return n, time.perf_counter() - started


# --------------------------------------------------------------------------- django-mailbox side
DJM_SCRIPT = r"""
import json, sys, time
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_mailbox"],
    DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": sys.argv[1], "USER": "postgres",
                           "HOST": "127.0.0.1", "PORT": "5432"}},
    MEDIA_ROOT=sys.argv[3], USE_TZ=True, DEFAULT_AUTO_FIELD="django.db.models.AutoField",
)
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django_mailbox.models import Mailbox, Message
box = Mailbox.objects.create(name="bench", uri=sys.argv[2])
started, cpu = time.perf_counter(), time.process_time()
got = list(box.get_new_mail())
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
import django_mailbox
print(json.dumps({"n": len(got), "seconds": elapsed, "cpu": cpu, "stored": Message.objects.count(),
                  "version": getattr(django_mailbox, "__version__", "?")}))
"""


def ensure_djm_venv() -> bool:
    python = DJM_VENV / "bin" / "python"
    if python.exists():
        ok = subprocess.run([str(python), "-c", "import django_mailbox"], capture_output=True).returncode == 0
        if ok:
            return True
    try:
        subprocess.run([sys.executable, "-m", "venv", str(DJM_VENV)], check=True, capture_output=True)
        subprocess.run([str(DJM_VENV / "bin" / "pip"), "install", "-q", *DJM_REQUIREMENTS], check=True,
                       capture_output=True, timeout=600)
        return True
    except Exception as exc:
        print(f"django-mailbox could not be installed ({exc}); using the comparable ingester instead.")
        return False


def run_djm(servers, address: str, password: str) -> tuple[int, float, float, str]:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as pg:
        pg.execute(f'DROP DATABASE IF EXISTS "{DJM_DB}"')
        pg.execute(f'CREATE DATABASE "{DJM_DB}"')
    media = Path(os.environ.get("TENANTMAIL_VAR_DIR", "/tmp")) / "djm-media"
    media.mkdir(parents=True, exist_ok=True)
    # django-mailbox's imaplib.IMAP4_SSL uses Python's default (unverified) context here.
    uri = f"imap+ssl://{quote(address, safe='')}:{quote(password, safe='')}@{servers.host}:{servers.ports['imaps']}"
    try:
        out = subprocess.run([str(DJM_VENV / "bin" / "python"), "-c", DJM_SCRIPT, DJM_DB, uri, str(media)],
                             check=True, capture_output=True, text=True, timeout=3600)
        data = json.loads(out.stdout.strip().splitlines()[-1])
        return data["n"], data["seconds"], data["cpu"], f"django-mailbox {data['version']} getmail"
    finally:
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as pg:
            pg.execute(f'DROP DATABASE IF EXISTS "{DJM_DB}" WITH (FORCE)')


def comparable_ingester(servers, address: str, password: str) -> tuple[int, float, float, str]:
    """One mail at a time, like django-mailbox: FETCH, parse, one row + commit per mail."""
    import email
    import email.policy

    from django.db import transaction

    from connections.models import StoredMessage

    conn = make_connection(servers, address, password)
    context = ssl.create_default_context(cafile=servers.ca_file)
    started, cpu = time.perf_counter(), cpu_now()
    imap = imaplib.IMAP4_SSL(servers.host, servers.ports["imaps"], ssl_context=context)
    imap.login(address, password)
    imap.select("INBOX")
    uids = [int(u) for u in imap.uid("SEARCH", "ALL")[1][0].split()]
    from django.core.files.base import ContentFile
    from django.utils import timezone
    import hashlib

    for uid in uids:
        raw = imap.uid("FETCH", str(uid), "(RFC822)")[1][0][1]
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        with transaction.atomic():
            row = StoredMessage(tenant_id=conn.tenant_id, connection=conn, server_key=f"x:{uid}", uid=uid,
                                subject=str(msg["subject"] or ""), fetched_at=timezone.now(),
                                raw_sha256=hashlib.sha256(raw).hexdigest(), size=len(raw))
            row.raw.save(f"{uid}.eml", ContentFile(raw), save=False)
            row.save()
    imap.logout()
    return len(uids), time.perf_counter() - started, cpu_now() - cpu, "comparable one-mail-at-a-time ingester"


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="bare,raw,full,reference",
                        help="comma-separated contenders to run (default: all four)")
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    if not only or set(only) - {"bare", "raw", "full", "reference"}:
        parser.error("--only: choose from bare, raw, full, reference")

    servers = start_servers()
    django_setup(DB)
    try:
        from connections.models import StoredMessage
        from connections.services.inbound.poll import poll
        from connections.services.messages.indexes import index_for_search

        print(f"Preparing {args.mails} mails (~20 KB, one in ten with a 200 KB attachment)…", flush=True)
        mails = [mail_20k(i, attachment=os.urandom(200 * 1024) if i % 10 == 0 else None) for i in range(args.mails)]
        total_bytes = sum(len(m) for m in mails)
        address, password = servers.add_user(local="ingest")
        for start in range(0, len(mails), 200):
            servers.append(address, mails[start:start + 200])
        print(f"  {len(mails)} mails, {total_bytes / 1e6:.1f} MB appended", flush=True)

        # A worker is a long-lived process: warm it up like one (imports, the cached TLS
        # context, database and broker connections) with a poll of a one-mail mailbox, not
        # timed.
        warm_address, warm_password = servers.add_user(local="warmup")
        servers.append(warm_address, [mail_20k(-1)])
        warm = poll(connection_id=make_connection(servers, warm_address, warm_password).pk, trigger="warm-up")
        assert warm.stored == 1, warm.summary()
        index_for_search()
        use_djm = "reference" in only and ensure_djm_venv()

        def bare() -> tuple[float, float, float]:
            cpu = cpu_now()
            n, seconds = bare_imaplib(servers, address, password)
            assert n == args.mails, n
            return n / seconds, cpu_now() - cpu, 0.0

        def raw() -> tuple[float, float, float]:
            conn = make_connection(servers, address, password, selection="all", post_processing="mark_read")
            cpu = cpu_now()
            result = poll(connection_id=conn.pk, parse=False, trigger="bench")
            cpu = cpu_now() - cpu
            assert result.stored == args.mails and result.failed == 0, result.summary()
            # Not part of raw ingest (and not of the next full round): index them now, untimed.
            StoredMessage.objects.filter(connection=conn).update(search_indexed=True)
            return result.stored / (result.duration_ms / 1000), cpu, 0.0

        def full() -> tuple[float, float, float]:
            conn = make_connection(servers, address, password, selection="all", post_processing="mark_read")
            started, cpu = time.perf_counter(), cpu_now()
            result = poll(connection_id=conn.pk, parse=True, trigger="bench")
            index_started = time.perf_counter()
            index_for_search()  # what the poll leaves to the indexer (mails come indexed now)
            index_seconds = time.perf_counter() - index_started
            seconds, cpu = time.perf_counter() - started, cpu_now() - cpu
            assert result.stored == args.mails and result.failed == 0, result.summary()
            unindexed = StoredMessage.objects.filter(connection=conn, search_indexed=False).count()
            assert unindexed == 0, unindexed
            return result.stored / seconds, cpu, index_seconds

        ref_name = ""

        def reference() -> tuple[float, float, float]:
            # django-mailbox deletes what it fetched from the server: it gets a mailbox of its
            # own with the same mails every round (appended untimed).
            nonlocal ref_name, use_djm
            ref_address, ref_password = servers.add_user()
            for start in range(0, len(mails), 200):
                servers.append(ref_address, mails[start:start + 200])
            if use_djm:
                try:
                    n, seconds, cpu, ref_name = run_djm(servers, ref_address, ref_password)
                    assert n == args.mails, n
                    return n / seconds, cpu, 0.0
                except subprocess.CalledProcessError as exc:
                    print(f"django-mailbox failed ({exc.stderr[-500:]}); using the comparable ingester instead.")
                    use_djm = False
            n, seconds, cpu, ref_name = comparable_ingester(servers, ref_address, ref_password)
            assert n == args.mails, n
            return n / seconds, cpu, 0.0

        contenders = {"bare": bare, "raw": raw, "full": full, "reference": reference}
        names = [name for name in contenders if name in only]
        rates = {name: [] for name in names}
        cpus = {name: [] for name in names}
        index_times = []
        for rnd in range(args.rounds):
            for name in names[rnd % len(names):] + names[:rnd % len(names)]:
                rate, cpu, extra = contenders[name]()
                rates[name].append(rate)
                cpus[name].append(cpu / args.mails * 1000)
                if name == "full":
                    index_times.append(extra)
            print(f"round {rnd + 1}/{args.rounds}: " + ", ".join(f"{n} {rates[n][-1]:.0f}/s" for n in names),
                  flush=True)

        rate = {name: median(values) for name, values in rates.items()}
        cpu_ms = {name: median(values) for name, values in cpus.items()}

        def line(name: str) -> str:
            return (f"{rate[name]:8.1f} mails/s, CPU {cpu_ms[name]:.2f} ms/mail "
                    f"(rounds: {', '.join(f'{r:.0f}' for r in rates[name])})")

        print()
        print(f"{args.mails} mails, {total_bytes / 1e6:.1f} MB; medians of {args.rounds} interleaved rounds")
        if "bare" in names:
            print(f"bare imaplib (UID ranges of 200):                        {line('bare')}")
        if "raw" in names:
            print(f"ours, raw ingest (fetch, store raw, commit, mark read):  {line('raw')}")
            if "bare" in names:
                print(f"  = {rate['raw'] / rate['bare']:.2f}x bare (goal >= 0.7x)")
        if "full" in names:
            print(f"ours, full processing (+ parse, bodies, attachments, search indexing): {line('full')}")
            print(f"  of which search indexing {median(index_times):.1f} s per {args.mails} mails (median)")
        if "reference" in names:
            print(f"reference: {ref_name}: {line('reference')}")
            if "full" in names:
                print(f"full processing incl. indexing / reference: {rate['full'] / rate['reference']:.1f}x (goal >= 10x)")
        print(machine_note())
    finally:
        django_teardown(DB)
        servers.stop()


if __name__ == "__main__":
    main()
