"""Shared set-up of the inbound benchmarks: Django on a throwaway PostgreSQL database, the
real Dovecot of tests/mailservers.py, deployed credentials and inbound connections.

Not a benchmark itself. Needs PostgreSQL on 127.0.0.1:5432 (user postgres), Redis for the
dispatch benchmark, and root for Dovecot, like the tests.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


_run_dirs: list[str] = []  # removed by django_teardown (about 1 GB after a default ingest run)


def django_setup(db_name: str) -> None:
    """Configure Django on a fresh database `db_name` (created now, dropped by teardown)."""
    # Not in /tmp: the fixture's Dovecot keeps its maildirs there, and a reference round
    # expunges thousands of mail files. On ext4 without a journal (this VM's root) every new
    # file in that block-group neighbourhood then scans past the freed inodes for minutes
    # (0.3 -> 0.9 ms CPU per stored mail measured). In production the mail server is
    # another machine, so the product's media dir is kept away from it here too.
    parent = Path(os.environ.get("BENCH_RUN_PARENT", ROOT / "var" / "bench" / "runs"))
    parent.mkdir(parents=True, exist_ok=True)
    # The same trap from the previous run: its teardown frees ~10,000 inodes in the block group
    # of the run folders, and for the next 30 s ext4 (no journal) skips each of them again for
    # every new file (recently_deleted(): 0.12 -> 1.0 ms CPU per stored mail measured in the
    # first rounds). With the "top of hierarchy" attribute (chattr +T) each run folder goes
    # into a block group of its own, like a new top-level folder. Best effort: elsewhere the
    # attribute may not exist.
    try:
        subprocess.run(["chattr", "+T", str(parent)], capture_output=True)
    except OSError:
        pass
    run_dir = tempfile.mkdtemp(prefix="tm-bench-", dir=parent)
    _run_dirs.append(run_dir)
    os.environ.update({
        "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "FERNET_KEYS": "ob-8dVjrl0aKu7CBUa_Q2lpaZJU4tTJ1CzCQ7P9gjuw=",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres", "TM_TEST_DB": db_name,
        "CELERY_BROKER_URL": os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14"),
        "CELERY_TASK_DEFAULT_QUEUE": f"tm-bench-{uuid.uuid4().hex[:8]}",
        "TENANTMAIL_ENV_FILE": "/nonexistent", "TENANTMAIL_VAR_DIR": run_dir,
        "MEDIA_ROOT": os.path.join(run_dir, "media"), "DEBUG": "false", "SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "tenantmail.settings",
    })
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection

    # The production schema: the real migrations, with the list/search indexes that every
    # stored mail has to go into.
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)


def django_teardown(db_name: str) -> None:
    from django.db import connection

    from tenantmail.celery import app

    try:  # tasks the polls queued (search indexing) on this run's own queue: nobody runs them
        app.control.purge()
    except Exception:
        pass
    while _run_dirs:
        shutil.rmtree(_run_dirs.pop(), ignore_errors=True)

    connection.creation.destroy_test_db(db_name, verbosity=0)


def start_servers(*, dovecot_extra: str = ""):
    sys.path.insert(0, str(ROOT))
    from tests.mailservers import start_mail_servers

    return start_mail_servers(dovecot_extra=dovecot_extra)


def make_connection(servers, address: str, password: str, *, protocol: str = "imap", **fields):
    """An inbound connection (implicit TLS, plain auth) with a deployed credential."""
    from connections.models import InboundConnection, Tenant, UserCredential
    from connections.services.setup import credentials

    tenant, _ = Tenant.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    name = f"cred-{uuid.uuid4().hex[:8]}"
    cred = UserCredential(tenant=tenant, name=name, username=address)
    credentials.save_artifact(credential=cred, password=password)
    credentials.deploy(credential_id=cred.pk, user=None)
    ms = servers.mail_settings(protocol=protocol, protection="ssl_tls", authentication="plain", username=address)
    values = dict(tenant=tenant, name=f"in-{uuid.uuid4().hex[:8]}", protocol=protocol, host=ms.host, port=ms.port,
                  protection="ssl_tls", authentication="plain", credential_name=name, trusted_ca=ms.trusted_ca,
                  timeout=60, max_messages=100_000, max_message_size=200 * 1024 * 1024)
    values.update(fields)
    return InboundConnection.objects.create(**values)


def mail_20k(i: int, *, attachment: bytes | None = None) -> bytes:
    """About 20 KB of text; with `attachment`, that attachment (base64) in addition."""
    msg = EmailMessage()
    msg["From"] = "Bench Sender <sender@example.test>"
    msg["To"] = "bench@example.test"
    msg["Subject"] = f"Benchmark mail {i}"
    msg["Message-ID"] = f"<bench-{i}-{uuid.uuid4().hex}@example.test>"
    msg["Date"] = "Sat, 21 Nov 2026 08:00:00 +0000"
    line = "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n"
    msg.set_content(f"Benchmark mail {i}\n\n" + line * 235)  # ~20 KB
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename=f"data-{i}.bin")
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine_note() -> str:
    try:
        load1, load5, _ = os.getloadavg()
    except OSError:
        return ""
    return f"load average {load1:.2f} (1 min) / {load5:.2f} (5 min) on {os.cpu_count()} CPUs"
