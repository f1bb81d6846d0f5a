#!/usr/bin/env python
"""Inbound ingest throughput against the real Dovecot of the test fixture, in one run.

2,000 mails of about 20 KB, one in ten with a 200 KB attachment, appended once to one
mailbox (IMAP over implicit TLS on loopback). The contenders read the same mailbox in turn:

  bare imaplib   login, SELECT, UID SEARCH ALL, UID FETCH BODY.PEEK[] in UID ranges of 200
                 (keeps nothing): the protocol's cost. Median of 5 runs.
  raw ingest     TenantMail's poll() with parsing deferred: fetched, raw bytes stored (file
                 storage + sha256), rows committed per batch, post-processed (mark as read).
                 Target: >= 50% of the bare rate.
  full           poll() as configured by default: also parsed into headers, bodies and
                 attachments (files + rows). Target: >= 10x the reference.
  reference      django-mailbox's getmail (Mailbox.get_new_mail(), in its own virtualenv
                 var/bench/venv-django-mailbox and database), which stores one mail at a time.
                 If it cannot be installed, a comparable one-mail-at-a-time ingester
                 (imaplib FETCH per mail, email.message_from_bytes, one row + commit per
                 mail) runs instead, and the output says so.

    .venv/bin/python bench/inbound_ingest.py [--mails 2000]

Prints each figure, the reference figure and the ratios.
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
started = time.perf_counter()
got = list(box.get_new_mail())
elapsed = time.perf_counter() - started
import django_mailbox
print(json.dumps({"n": len(got), "seconds": elapsed, "stored": Message.objects.count(),
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


def run_djm(servers, address: str, password: str) -> tuple[int, float, str]:
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
        return data["n"], data["seconds"], f"django-mailbox {data['version']} getmail"
    finally:
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as pg:
            pg.execute(f'DROP DATABASE IF EXISTS "{DJM_DB}" WITH (FORCE)')


def comparable_ingester(servers, address: str, password: str) -> tuple[int, float, str]:
    """One mail at a time, like django-mailbox: FETCH, parse, one row + commit per mail."""
    import email
    import email.policy

    from django.db import transaction

    from connections.models import StoredMessage

    conn = make_connection(servers, address, password)
    context = ssl.create_default_context(cafile=servers.ca_file)
    started = time.perf_counter()
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
    return len(uids), time.perf_counter() - started, "comparable one-mail-at-a-time ingester"


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--bare-runs", type=int, default=5)
    args = parser.parse_args()

    servers = start_servers()
    django_setup(DB)
    try:
        from connections.services.polling import poll

        print(f"Preparing {args.mails} mails (~20 KB, one in ten with a 200 KB attachment)…", flush=True)
        mails = [mail_20k(i, attachment=os.urandom(200 * 1024) if i % 10 == 0 else None) for i in range(args.mails)]
        total_bytes = sum(len(m) for m in mails)
        address, password = servers.add_user(local="ingest")
        for start in range(0, len(mails), 200):
            servers.append(address, mails[start:start + 200])
        print(f"  {len(mails)} mails, {total_bytes / 1e6:.1f} MB appended", flush=True)

        bare = []
        for _ in range(args.bare_runs):
            n, seconds = bare_imaplib(servers, address, password)
            assert n == args.mails, n
            bare.append(n / seconds)
        bare_rate = median(bare)

        # A worker is a long-lived process: warm it up like one (imports, the cached TLS
        # context, database and broker connections) with a poll of a one-mail mailbox, not
        # timed.
        warm_address, warm_password = servers.add_user(local="warmup")
        servers.append(warm_address, [mail_20k(-1)])
        warm = poll(connection_id=make_connection(servers, warm_address, warm_password).pk, trigger="warm-up")
        assert warm.stored == 1, warm.summary()

        raw_conn = make_connection(servers, address, password, selection="all", post_processing="mark_read")
        raw = poll(connection_id=raw_conn.pk, parse=False, trigger="bench")
        assert raw.stored == args.mails and raw.failed == 0, raw.summary()
        raw_rate = raw.stored / (raw.duration_ms / 1000)

        full_conn = make_connection(servers, address, password, selection="all", post_processing="mark_read")
        full = poll(connection_id=full_conn.pk, parse=True, trigger="bench")
        assert full.stored == args.mails and full.failed == 0, full.summary()
        full_rate = full.stored / (full.duration_ms / 1000)
        # What the poll leaves for later (the index_messages_for_search task): not part of
        # the poll's rate, printed so that the cost is not hidden.
        from connections.services.messages import index_for_search

        started = time.perf_counter()
        indexed = index_for_search()
        index_seconds = time.perf_counter() - started

        if ensure_djm_venv():
            try:
                n, seconds, ref_name = run_djm(servers, address, password)
            except subprocess.CalledProcessError as exc:
                print(f"django-mailbox failed ({exc.stderr[-500:]}); using the comparable ingester instead.")
                n, seconds, ref_name = comparable_ingester(servers, address, password)
        else:
            n, seconds, ref_name = comparable_ingester(servers, address, password)
        ref_rate = n / seconds

        print()
        print(f"bare imaplib (UID ranges of 200, median of {args.bare_runs}): {bare_rate:8.0f} mails/s "
              f"(runs: {', '.join(f'{r:.0f}' for r in bare)})")
        print(f"ours, raw ingest (fetch, store raw, commit, mark read): {raw_rate:8.0f} mails/s "
              f"= {raw_rate / bare_rate:.3f}x bare (target >= 0.50x)")
        print(f"ours, full processing (+ parse, bodies, attachments):   {full_rate:8.0f} mails/s "
              f"= {full_rate / bare_rate:.2f}x bare")
        print(f"  then, off the poll's path: search indexing of {indexed} stored mails (both polls) took "
              f"{index_seconds:.1f} s")
        print(f"reference: {ref_name}: {ref_rate:8.1f} mails/s ({n} mails in {seconds:.1f} s)")
        print(f"full processing / reference: {full_rate / ref_rate:.1f}x (target >= 10x)")
        print(machine_note())
    finally:
        django_teardown(DB)
        servers.stop()


if __name__ == "__main__":
    main()
