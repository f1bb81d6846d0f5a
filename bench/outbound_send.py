#!/usr/bin/env python
"""Outbox throughput against the real Postfix of the test fixture, in one interleaved run.

Three contenders send the same kind of message (~10 KB, text/plain, one recipient) to the
local Postfix over its submission port (STARTTLS, verified against the run's CA, then AUTH
PLAIN — what a tenant's connection does). What Postfix does with the mail is --delivery:

  discard (default)  Postfix queues every mail for real (smtpd, cleanup writing and fsyncing
               the queue file, qmgr) and then hands it to its own discard(8) transport instead
               of a mailbox: a mail server on a machine of its own, whose mailbox delivery does
               not compete with the sender for this machine's 2 CPUs. Each batch is over when
               Postfix's queue is empty again.
  lmtp         the whole chain on this machine: Postfix delivers every mail into Dovecot over
               LMTP (~4 ms of their CPU per mail, more than any sender spends: on 2 cores
               the server saturates the machine, and a faster client only waits for it).
               Each batch is over when Dovecot has every mail.

The contenders:

  ours         TenantMail's outbox with default settings: messages queued with
               outbound.enqueue.enqueue(), then the timed part is outbound.sending.send_due() — claims, MIME loaded
               from the database, OUTBOX_PARALLEL_SESSIONS (2) SMTP sessions of up to 100
               messages at once, every message's outcome recorded;
  ours-1-session  the same with OUTBOX_PARALLEL_SESSIONS=1 (one session at a time);
  bare         a bare smtplib loop: one SMTP connection reused, sendmail() per message
               (the same MIME bytes the outbox built);
  bare-pipelined  what a client without any bookkeeping reaches with the outbox's protocol: the
               same bytes over OUTBOX_PARALLEL_SESSIONS (2) sessions at once, MAIL/RCPT/DATA
               pipelined in one write (as SMTPClient.send does), no database; a ceiling for ours;
  bare-journaled  bare-pipelined plus the least bookkeeping issue 19's crash guarantee needs (at
               most one message per session between its data and a recorded outcome): before
               each message's data, one UPDATE of a one-row table committed asynchronously (as
               the outbox commits "DATA started"), overlapping the server's replies to
               MAIL/RCPT/DATA; no claims, no outcomes, no MIME from the database. The ceiling for
               any sender that keeps that guarantee;
  post-office  django-post-office 3.12's `send_queued_mail` (defaults: 5 threads, one SMTP
               connection each), queued with post_office.mail.send(); run in its own
               virtualenv and database (var/bench/venv-post-office, created when missing).

ROUNDS rounds of PER_ROUND messages each, the contenders' order rotating every round; after
each batch the script waits until the server has delivered (or discarded) every mail, so each
batch meets a quiet server.
Connecting is part of every timed batch. The connection has the default settings (e.g. at
most 100 messages per SMTP session, as an operator gets it). Prints each contender's median
rate over the rounds, the CPU seconds per mail of the sending process (median), the ratios
of the medians and the load average, the CPU seconds per mail of PostgreSQL over the timed part
(every backend and background process, ended backends included: the bookkeeping's other half)
— and the CPU seconds per mail of the mail servers themselves
(Postfix and Dovecot: their processes' user + system time over the batch, delivery included,
and by process name; on 2 cores they share the CPUs with the sender and PostgreSQL. Delivery
may lag behind the timed sending, so CPUs / their CPU per mail is no hard ceiling on a rate;
bare-pipelined is the one).

    .venv/bin/python bench/outbound_send.py [--rounds 5] [--per-round 200] [--delivery discard|lmtp]
                                            [--only ours,bare] [--rtt MS]

--rtt MS puts a relay of this script between every contender and Postfix that delays each
direction by MS/2 milliseconds: a mail server across a network (a LAN is 0.1-1 ms, a provider
like Microsoft 365 10-50 ms) instead of on the loopback beside the sender. Without it (the
default) the server answers in microseconds and shares the sender's CPUs: the case least
favourable to parallel, pipelined sessions.

Needs PostgreSQL on 127.0.0.1:5432 (user postgres) and root for Postfix/Dovecot, like the tests.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import queue
import re
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from procs import postgres_cpu  # noqa: E402

PO_VENV = ROOT / "var" / "bench" / "venv-post-office"
PO_REQUIREMENTS = ["Django==5.2.19", "django-post-office==3.12.0", "psycopg[binary]==3.2.10"]
PO_DB = "bench_tm_postoffice"
OUR_DB = "bench_tm_outbound"
SENDER = "bench-sender@example.test"
# bare-journaled's "DATA started": one row per session, committed asynchronously like the outbox's.
JOURNAL_DSN = f"host=127.0.0.1 port=5432 user=postgres dbname={OUR_DB}"
JOURNAL_SQL = ("WITH u AS (UPDATE bench_journal SET n = %s WHERE id = %s RETURNING 1) "
               "SELECT set_config('synchronous_commit', 'off', true), count(*) FROM u")


def body_10k(i: int) -> str:
    line = "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n"
    return f"Benchmark message {i}\n\n" + line * 118  # ~10 KB


# --------------------------------------------------------------------------- network delay
class DelayRelay:
    """A TCP relay on 127.0.0.1 that forwards every byte to `target` and back, each direction
    delayed by `one_way` seconds (bytes keep their order): a network's round-trip time. Runs
    in a process of its own (`--relay`), so that its CPU is nobody's sending process's."""

    def __init__(self, target: tuple[str, int], one_way: float) -> None:
        self.target, self.one_way = target, one_way
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(self.target)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for src, dst in ((client, server), (server, client)):
                pending: "queue.SimpleQueue[tuple[float, bytes]]" = queue.SimpleQueue()
                threading.Thread(target=self._read, args=(src, pending), daemon=True).start()
                threading.Thread(target=self._write, args=(dst, pending), daemon=True).start()

    def _read(self, src, pending) -> None:
        while True:
            try:
                data = src.recv(262144)
            except OSError:
                data = b""
            pending.put((time.monotonic() + self.one_way, data))
            if not data:
                return

    @staticmethod
    def _write(dst, pending) -> None:
        while True:
            due, data = pending.get()
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return


# --------------------------------------------------------------------------- post-office side
def post_office_worker(host: str, port: int) -> None:
    # The SMTP user and password come in the environment (not the command line); the
    # run's CA through SSL_CERT_FILE, which Django's SMTP backend's default context reads.
    """Runs in the post-office virtualenv: reads {"n", "rcpt", "round"} lines, answers timings."""
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "post_office"],
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": PO_DB, "USER": "postgres",
                               "HOST": "127.0.0.1", "PORT": "5432"}},
        EMAIL_BACKEND="post_office.EmailBackend",
        EMAIL_HOST=host, EMAIL_PORT=port, EMAIL_USE_TLS=True, EMAIL_USE_SSL=False,
        EMAIL_HOST_USER=os.environ["BENCH_SMTP_USER"], EMAIL_HOST_PASSWORD=os.environ["BENCH_SMTP_PASSWORD"],
        POST_OFFICE={"BACKENDS": {"default": "django.core.mail.backends.smtp.EmailBackend"}},
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
        USE_TZ=True, TIME_ZONE="UTC", DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        LOGGING={"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}},
        POST_OFFICE_LOCK_FILE=os.path.join(tempfile.gettempdir(), "bench-post-office"),
    )
    django.setup()
    from django.core.management import call_command
    from post_office import mail
    from post_office.models import Email, STATUS

    call_command("migrate", verbosity=0)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        mail.send_many([
            dict(sender=SENDER, recipients=[job["rcpt"]], subject=f"po {job['round']} {i}",
                 message=body_10k(i), priority="medium")
            for i in range(job["n"])
        ])
        print(json.dumps({"queued": job["n"]}), flush=True)
        sys.stdin.readline()  # go: the bench starts counting PostgreSQL's CPU
        started, cpu = time.perf_counter(), time.process_time()
        call_command("send_queued_mail", processes=1)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        sent = Email.objects.filter(status=STATUS.sent, subject__startswith=f"po {job['round']} ").count()
        print(json.dumps({"seconds": seconds, "cpu": cpu, "sent": sent}), flush=True)


def ensure_post_office_venv() -> Path:
    python = PO_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PO_VENV} for django-post-office …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PO_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PO_REQUIREMENTS], check=True)
    return python


def _psql(sql: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(sql)


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)  # medians need >= 3
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--compare-writer", metavar="WRITER_PY",
                        help="also run 'ours-before': the outbox with the Writer (or older _Writer) of this file (an older "
                             "connections/services/outbound/writer.py, e.g. from `git show "
                             "main:connections/services/outbound/writer.py`) — a before/after A/B in one run")
    parser.add_argument("--delivery", choices=["discard", "lmtp"], default="discard",
                        help="what Postfix does with each queued mail (see above; default discard)")
    parser.add_argument("--rtt", type=float, default=0.0, metavar="MS",
                        help="a network's round-trip time between every contender and Postfix (see above; default 0: "
                             "the loopback)")
    parser.add_argument("--only", metavar="NAMES",
                        help="comma-separated contenders to run (default all; the ratios need ours and bare)")
    args = parser.parse_args()

    run_dir = tempfile.mkdtemp(prefix="tm-bench-outbound-")
    os.environ.update({
        "TENANTMAIL_ENV_FILE": "/nonexistent", "TENANTMAIL_VAR_DIR": run_dir,
        "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "FERNET_KEYS": "ob-8dVjrl0aKu7CBUa_Q2lpaZJU4tTJ1CzCQ7P9gjuw=",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres", "TM_TEST_DB": OUR_DB,
        "CELERY_BROKER_URL": "filesystem://", "DEBUG": "false", "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "tenantmail.settings",
    })
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import psycopg
    from django.db import connection
    from django.test import override_settings

    from connections.models import OutboundConnection, OutboxMessage, Tenant, UserCredential
    from connections.services.outbound import enqueue, policy, prepare, sending
    from connections.services.setup import credentials
    from tests.mailservers import start_mail_servers

    po_python = ensure_post_office_venv()
    servers = start_mail_servers(postfix_delivery=args.delivery)
    host, port = servers.host, servers.ports["submission"]
    relay = None
    if args.rtt > 0:
        # It ends when its stdin closes: with this process, however that ends.
        relay = subprocess.Popen([sys.executable, __file__, "--relay", host, str(port), str(args.rtt / 2000)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        port = int(relay.stdout.readline())
    sender, sender_password = servers.add_user(local="bench-sender")
    ca_context = ssl.create_default_context(cafile=servers.ca_file)
    from django.apps import apps
    from django.conf import settings

    # Tables straight from the models, like the test suite (--nomigrations).
    settings.MIGRATION_MODULES = {app.label: None for app in apps.get_app_configs()}
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    with psycopg.connect(JOURNAL_DSN, autocommit=True) as journal:
        journal.execute("CREATE TABLE bench_journal (id int PRIMARY KEY, n bigint NOT NULL)")
        journal.execute("INSERT INTO bench_journal SELECT i, 0 FROM generate_series(0, 63) AS i")
    _psql(f'DROP DATABASE IF EXISTS "{PO_DB}"')
    _psql(f'CREATE DATABASE "{PO_DB}"')
    po_env = {**os.environ, "BENCH_SMTP_USER": sender, "BENCH_SMTP_PASSWORD": sender_password,
              "SSL_CERT_FILE": servers.ca_file}
    po = subprocess.Popen([str(po_python), __file__, "--post-office-worker", host, str(port)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(ROOT), env=po_env)
    try:
        assert json.loads(po.stdout.readline()).get("ready"), "post-office worker did not start"
        tenant = Tenant.objects.create(name="Bench", slug="bench")
        cred = credentials.save_artifact(
            credential=UserCredential(tenant=tenant, name="bench", username=sender), password=sender_password)
        credentials.deploy(credential_id=cred.pk, user=None)
        conn = OutboundConnection.objects.create(
            tenant=tenant, name="postfix", host=host, port=port, protection="starttls_mandatory",
            authentication="plain", credential_name="bench", trusted_ca=servers.ca_pem,
            default_from=SENDER, timeout=60,  # default settings: 100 messages per session
        )
        n = args.per_round

        def delivered(rcpt: str, count: int) -> None:
            """The batch is over once the server has dealt with every mail (not timed)."""
            if args.delivery == "lmtp":
                servers.wait_for_messages(rcpt, count=count, timeout=300)
            else:
                servers.wait_for_queue_empty(timeout=300)

        def run_ours(rnd: int) -> tuple[float, float, float]:
            rcpt = servers.add_user()[0]
            for i in range(n):
                enqueue.enqueue(connection_id=conn.pk, to=[rcpt], subject=f"ours {rnd} {i}", text=body_10k(i),
                                dispatch=False)
            pg = postgres_cpu()  # read before the clocks start: its walk of /proc is nobody's time
            started, cpu = time.perf_counter(), time.process_time()
            sent = 0
            while sent < n:  # one send_due per SMTP session (max_per_session), as the worker runs them
                report = sending.send_due(connection_id=conn.pk, time_budget=3600)
                assert report.sent, str(report)
                sent += report.sent
            seconds, cpu, pg = time.perf_counter() - started, time.process_time() - cpu, postgres_cpu() - pg
            assert sent == n, sent
            delivered(rcpt, n)
            return seconds, cpu, pg

        def run_bare(rnd: int) -> tuple[float, float, float]:
            rcpt = servers.add_user()[0]
            # The same bytes the outbox builds, built beforehand (not timed).
            prepared = [prepare.prepare(connection_id=conn.pk, to=[rcpt], subject=f"bare {rnd} {i}",
                                        text=body_10k(i)).mime for i in range(n)]
            pg = postgres_cpu()
            started, cpu = time.perf_counter(), time.process_time()
            smtp = smtplib.SMTP(host, port, timeout=60)
            smtp.starttls(context=ca_context)
            smtp.login(sender, sender_password)
            for raw in prepared:
                smtp.sendmail(SENDER, [rcpt], raw)
            smtp.quit()
            seconds, cpu, pg = time.perf_counter() - started, time.process_time() - cpu, postgres_cpu() - pg
            delivered(rcpt, n)
            return seconds, cpu, pg

        def run_bare_pipelined(rnd: int, *, journaled: bool = False) -> tuple[float, float, float]:
            rcpt = servers.add_user()[0]
            prepared = [prepare.prepare(connection_id=conn.pk, to=[rcpt], subject=f"pipelined {rnd} {i}",
                                        text=body_10k(i)).mime for i in range(n)]
            envelope = f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode()

            def session(slot: int, part: list[bytes]) -> None:
                journal = psycopg.connect(JOURNAL_DSN, autocommit=True) if journaled else None
                smtp = smtplib.SMTP(host, port, timeout=60)
                smtp.starttls(context=ca_context)
                smtp.login(sender, sender_password)
                for number, raw in enumerate(part):
                    smtp.send(envelope)
                    if journal is not None:  # "DATA started", committed while the server answers
                        journal.execute(JOURNAL_SQL, [number, slot], prepare=True).fetchone()
                    replies = [smtp.getreply()[0] for _ in range(3)]
                    assert replies == [250, 250, 354], replies
                    payload = re.sub(rb"(?m)^\.", b"..", raw)
                    smtp.send(payload + (b"" if payload.endswith(b"\r\n") else b"\r\n") + b".\r\n")
                    assert smtp.getreply()[0] == 250
                smtp.quit()
                if journal is not None:
                    journal.close()

            sessions = policy.parallel_sessions()
            pg = postgres_cpu()
            started, cpu = time.perf_counter(), time.process_time()
            threads = [threading.Thread(target=session, args=(i, prepared[i::sessions])) for i in range(sessions)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds, cpu, pg = time.perf_counter() - started, time.process_time() - cpu, postgres_cpu() - pg
            delivered(rcpt, n)
            return seconds, cpu, pg

        def run_post_office(rnd: int) -> tuple[float, float, float]:
            rcpt = servers.add_user()[0]
            po.stdin.write(json.dumps({"n": n, "rcpt": rcpt, "round": rnd}) + "\n")
            po.stdin.flush()
            assert json.loads(po.stdout.readline())["queued"] == n
            pg = postgres_cpu()
            po.stdin.write("go\n")
            po.stdin.flush()
            answer = json.loads(po.stdout.readline())
            pg = postgres_cpu() - pg  # its sending's queries (and nothing else runs meanwhile)
            assert answer["sent"] == n, answer
            delivered(rcpt, n)
            return answer["seconds"], answer["cpu"], pg

        def run_one_session(rnd: int) -> tuple[float, float, float]:
            with override_settings(OUTBOX_PARALLEL_SESSIONS=1):
                return run_ours(rnd)

        contenders = {"ours": run_ours, "bare": run_bare, "post-office": run_post_office,
                      "ours-1-session": run_one_session, "bare-pipelined": run_bare_pipelined,
                      "bare-journaled": functools.partial(run_bare_pipelined, journaled=True)}
        if args.compare_writer:
            import importlib.util

            spec = importlib.util.spec_from_file_location("connections.services.outbound._writer_before",
                                                          args.compare_writer)
            before = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(before)
            if hasattr(before, "Writer"):
                before_writer = before.Writer
            else:  # before issue 14: `_Writer(threaded=True)` was the worker's writer
                if not hasattr(before._Writer, "flush"):
                    before._Writer.flush = lambda self: None  # that writer's thread wrote outcomes by itself
                before_writer = functools.partial(before._Writer, threaded=True)
            current_writer = sending.Writer

            def run_before(rnd: int) -> tuple[float, float, float]:
                sending.Writer = before_writer
                try:
                    return run_ours(rnd)
                finally:
                    sending.Writer = current_writer

            contenders["ours-before"] = run_before
        if args.only:
            contenders = {name: contenders[name] for name in args.only.split(",")}
        seconds: dict[str, list[float]] = {name: [] for name in contenders}
        cpus: dict[str, list[float]] = {name: [] for name in contenders}
        pg_cpus: dict[str, list[float]] = {name: [] for name in contenders}
        server_cpus: dict[str, list[float]] = {name: [] for name in contenders}
        by_process: dict[str, dict[str, float]] = {name: {} for name in contenders}
        names = list(contenders)
        # One warm-up batch each, not counted: imports, caches, Postfix's processes.
        for name in names:
            contenders[name](-1)
        print(f"load average at the start {os.getloadavg()[0]:.1f}", flush=True)
        for rnd in range(args.rounds):
            order = names[rnd % len(names):] + names[: rnd % len(names)]
            for name in order:
                server_before = servers.cpu_seconds_by_process()
                wall, cpu, pg = contenders[name](rnd)  # each waits until the server has delivered every mail
                server_after = servers.cpu_seconds_by_process()
                server_cpus[name].append(sum(server_after.values()) - sum(server_before.values()))
                for process, used in server_after.items():
                    by_process[name][process] = by_process[name].get(process, 0.0) + used - server_before.get(process, 0.0)
                seconds[name].append(wall)
                cpus[name].append(cpu)
                pg_cpus[name].append(pg)
            print(f"round {rnd + 1}/{args.rounds}: " + ", ".join(
                f"{name} {n / seconds[name][-1]:.0f}/s" for name in names), flush=True)
        size = len(bytes(OutboxMessage.objects.first().mime))
    finally:
        po.stdin.close()
        po.wait(30)
        servers.stop()
        if relay is not None:
            relay.kill()
        connection.creation.destroy_test_db(OUR_DB, verbosity=0)
        _psql(f'DROP DATABASE IF EXISTS "{PO_DB}"')

    total = args.rounds * n
    rate = {name: statistics.median(n / s for s in values) for name, values in seconds.items()}
    cpu_ms = {name: statistics.median(values) / n * 1000 for name, values in cpus.items()}
    server_ms = {name: statistics.median(values) / n * 1000 for name, values in server_cpus.items()}
    pg_ms = {name: statistics.median(values) / n * 1000 for name, values in pg_cpus.items()}
    print()
    load = os.getloadavg()
    delivery = {"discard": "Postfix's discard transport after real queueing (mailbox delivery elsewhere)",
                "lmtp": "Postfix delivering into Dovecot over LMTP on this machine"}[args.delivery]
    print(f"{total} messages of {size} bytes per contender, {args.rounds} interleaved rounds of {n}, "
          f"Postfix submission {host}:{port} (STARTTLS + AUTH PLAIN"
          f"{f', through a relay adding a {args.rtt:g} ms round trip' if args.rtt else ''}), default connection settings, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f} (1 min) / {load[1]:.2f} (5 min)")
    print(f"delivery: {args.delivery} — {delivery}")
    for name in names:
        print(f"  {name:14s} median {rate[name]:7.1f} mails/s, CPU {cpu_ms[name]:.2f} ms per mail "
              f"(sending process) + PostgreSQL {pg_ms[name]:.2f} ms, Postfix + Dovecot {server_ms[name]:.2f} ms")
    for name in names:  # where the servers' CPU went (mean over the rounds), the biggest first
        spent = sorted(by_process[name].items(), key=lambda kv: -kv[1])
        print(f"  {name:14s} server CPU ms per mail: " + ", ".join(
            f"{process} {used / total * 1000:.2f}" for process, used in spent if used / total >= 0.00005))
    if "ours" not in rate or "bare" not in rate:
        return
    print(f"ours / bare smtplib loop:   {rate['ours'] / rate['bare']:.2f}  (issue 21 goal >= 1.2)")
    if "bare-pipelined" in rate:
        print(f"bare-pipelined / bare:      {rate['bare-pipelined'] / rate['bare']:.2f}  (no bookkeeping: a ceiling for ours)")
    if "bare-journaled" in rate:
        print(f"bare-journaled / bare:      {rate['bare-journaled'] / rate['bare']:.2f}  "
              f"(issue 19's least bookkeeping: the ceiling for a sender keeping its guarantee)")
        print(f"ours / bare-journaled:      {rate['ours'] / rate['bare-journaled']:.2f}")
    if "post-office" in rate:
        print(f"ours / post-office:         {rate['ours'] / rate['post-office']:.2f}  (target > 1)")
        print(f"post-office / bare:         {rate['post-office'] / rate['bare']:.2f}")
    if "ours-1-session" in rate:
        print(f"ours-1-session / bare:      {rate['ours-1-session'] / rate['bare']:.2f}  "
              f"(ours: OUTBOX_PARALLEL_SESSIONS sessions, default 2)")
    if "ours-before" in rate:
        print(f"ours-before / bare:         {rate['ours-before'] / rate['bare']:.2f}")
        print(f"ours / ours-before:         {rate['ours'] / rate['ours-before']:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--post-office-worker":
        post_office_worker(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 5 and sys.argv[1] == "--relay":
        print(DelayRelay((sys.argv[2], int(sys.argv[3])), float(sys.argv[4])).port, flush=True)
        sys.stdin.read()  # until the bench ends
    else:
        main()
