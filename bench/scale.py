#!/usr/bin/env python
"""Throughput at scale: N inbound connections due every 60 s, sustained by real beat and worker
processes started as ./scripts/run starts them (default settings: concurrency two per CPU).

Variants (--target):
  closed   every connection points at a closed loopback port (connection refused: the
           cheapest failing poll — a connect attempt, its history row, nothing else);
  dovecot  every connection polls a real, empty Dovecot mailbox of its own (TLS, login,
           select, logout), users added in bulk (tests/mailservers.py add_users). Dovecot
           runs in its documented high-performance mode (login and IMAP processes reused,
           auth cache), as a server with thousands of logins a minute is run;
           --dovecot-mode default keeps the fixture's configuration (a process per login,
           no auth cache: about four times the server's CPU per poll).

The due times are spread evenly over the first interval (a steady state, not one burst).
A failing poll backs off (1, 2, 4 … minutes); the bench resets the failure counters every
second so that the load stays at N polls a minute instead of thinning out.

Measured from the history rows (PollRun) after the run, for the polls that started after
the first interval (warm-up excluded):
  lag   = poll started − the time it was due. A poll is due `every` seconds after the
          previous poll of the connection finished (that is how its next_poll_at is
          computed), the first one at the spread-out time the bench set;
  gap   = the longest time between two poll starts of one connection, and how many
          connections were due for more than two intervals without a poll at the end.
Goals (issue 21 item 3): lag p95 < 10 s; no connection due for more than two intervals
without a poll.

    .venv/bin/python bench/scale.py [--connections 10000] [--minutes 5] [--target closed|dovecot]
                                    [--dovecot-mode high-performance|default]
    CELERY_CONCURRENCY=N sets the worker's concurrency (default: two per CPU, as ./scripts/run).
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound_common import ROOT, django_setup, django_teardown, machine_note  # noqa: E402
from procs import service_pid, tree_cpu  # noqa: E402

DB = f"bench_tm_scale_{os.getpid()}"
EVERY = 60
# Dovecot's documented high-performance mode, as a server with thousands of logins a minute runs
# it: login and IMAP processes serve one client after another instead of being forked per
# connection, and the auth cache answers repeated logins. The fixture's default (a process per
# login, no auth cache) costs the server about four times the CPU per poll.
DOVECOT_HIGH_PERFORMANCE = """
service imap-login {
  service_count = 0
  process_min_avail = 2
  vsz_limit = 1G
}
service imap {
  service_count = 0
  process_limit = 2048
}
auth_cache_size = 10M
"""


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connect() is refused at once
    return port


def machine_busy() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cpu_breakdown(procs: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far: our worker (parent, pool processes), beat, PostgreSQL, Redis."""
    out: dict[str, float] = {}
    for label, pid in procs.items():
        tree = tree_cpu(pid)
        if label == "worker":
            out["worker (main process)"] = tree.get("self", 0.0)
            out["worker (pool processes)"] = tree.get("children", 0.0)
        else:
            out[label] = sum(tree.values())
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def concurrency() -> str:
    """The worker's --concurrency as ./scripts/run sets it: CELERY_CONCURRENCY, else two per CPU."""
    return os.environ.get("CELERY_CONCURRENCY") or str(2 * (os.cpu_count() or 1))


def start(kind: str, env: dict) -> subprocess.Popen:
    """beat / worker exactly as scripts/run starts them (documented default settings)."""
    if kind == "worker":
        cmd = ["worker", "--loglevel", "WARNING", "--concurrency", concurrency(),
               "--hostname", f"bench-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle"]
    else:
        cmd = ["beat", "--loglevel", "WARNING"]
    log = open(Path(env["TENANTMAIL_VAR_DIR"]) / f"{kind}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "tenantmail", *cmd], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--target", choices=("closed", "dovecot"), default="closed")
    parser.add_argument("--dovecot-mode", choices=("high-performance", "default"), default="high-performance",
                        help="the Dovecot configuration for --target dovecot (default: high-performance)")
    args = parser.parse_args()
    django_setup(DB)
    procs: list[subprocess.Popen] = []
    servers = None
    stop_reset = threading.Event()
    try:
        from django.conf import settings
        from django.db import connection, connections
        from django.utils import timezone

        from connections.models import InboundConnection, PollRun, Tenant, UserCredential
        from connections.services.setup import credentials

        n = args.connections
        tenant = Tenant.objects.create(name="Bench", slug="bench")
        common = dict(tenant=tenant, schedule_every=EVERY, timeout=10, max_messages=100)
        rows = []  # (connection fields); due times are set below, once the set-up is done
        if args.target == "closed":
            # One credential for all; a loopback address of its own per connection (127.0.0.0/8 is all
            # loopback), so that every connection is a mailbox of its own for the mailbox lock.
            cred = UserCredential(tenant=tenant, name="bench", username="bench@example.test")
            credentials.save_artifact(credential=cred, password="bench-password")
            credentials.deploy(credential_id=cred.pk, user=None)
            port = closed_port()
            for i in range(n):
                rows.append(InboundConnection(
                    name=f"c{i}", host=f"127.1.{i // 250}.{i % 250 + 1}", port=port, protocol="imap", protection="ssl_tls",
                    authentication="plain", credential_name="bench", **common))
        else:
            from inbound_common import start_servers

            servers = start_servers(
                dovecot_extra=DOVECOT_HIGH_PERFORMANCE if args.dovecot_mode == "high-performance" else "")
            users = servers.add_users(n)
            ms = servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain",
                                       username=users[0][0])
            for i, (address, password) in enumerate(users):
                cred = UserCredential(tenant=tenant, name=f"u{i}", username=address)
                credentials.save_artifact(credential=cred, password=password)
                credentials.deploy(credential_id=cred.pk, user=None)
            for i in range(n):
                rows.append(InboundConnection(
                    name=f"c{i}", host=ms.host, port=ms.port, protocol="imap", protection="ssl_tls",
                    authentication="plain", credential_name=f"u{i}", trusted_ca=ms.trusted_ca,
                    **common))
        t0 = timezone.now() + timedelta(seconds=20)  # time for the processes to start
        for i, row in enumerate(rows):
            row.next_poll_at = t0 + timedelta(seconds=EVERY * i / n)
        InboundConnection.objects.bulk_create(rows, batch_size=2000)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE connections_inboundconnection")
        connections.close_all()

        db = settings.DATABASES["default"]
        env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
        env.pop("TM_TEST_DB", None)
        env.pop("LOG_LEVEL", None)
        servers_cpu0 = servers.cpu_seconds() if servers is not None else 0.0
        machine0 = machine_busy()
        procs = [start("worker", env), start("beat", env)]
        watched = {"worker": procs[0].pid, "beat": procs[1].pid}
        for label, executable in (("PostgreSQL", "bin/postgres"), ("Redis", "redis-server")):
            if (pid := service_pid(executable)) is not None:
                watched[label] = pid
        cpu0 = cpu_breakdown(watched)

        def reset_failures() -> None:
            # Keep every failing connection at its first failure: backoff = one interval.
            while not stop_reset.wait(1.0):
                InboundConnection.objects.filter(consecutive_failures__gt=0).update(consecutive_failures=0)
            connections.close_all()

        if args.target == "closed":
            threading.Thread(target=reset_failures, daemon=True).start()

        duration = args.minutes * 60
        end = t0 + timedelta(seconds=duration)
        while timezone.now() < end:
            time.sleep(5)
            for proc in procs:
                if proc.poll() is not None:
                    raise SystemExit(f"a celery process exited ({proc.args[4]}); see {env['TENANTMAIL_VAR_DIR']}")
        machine = machine_busy()
        busy = (machine[0] - machine0[0]) / max(1, machine[1] - machine0[1])
        servers_cpu = (servers.cpu_seconds() - servers_cpu0) if servers is not None else 0.0
        cpu1 = cpu_breakdown(watched)
        for proc in procs:
            stop(proc)
        stop_reset.set()
        cpu = os.times()  # children: beat + worker (+ pool processes reaped with them)
        children_cpu = cpu.children_user + cpu.children_system

        runs = list(PollRun.objects.filter(started_at__lt=end).order_by("connection_id", "started_at")
                    .values_list("connection_id", "started_at", "finished_at", "outcome"))
        initial = {pk: t0 + timedelta(seconds=EVERY * i / n)
                   for i, pk in enumerate(InboundConnection.objects.order_by("pk").values_list("pk", flat=True))}
        warm = t0 + timedelta(seconds=EVERY)
        lags, gaps, durations, outcomes = [], [], [], {}
        by_minute: dict[int, list[float]] = {}
        last: dict[int, tuple] = {}
        for cid, started, finished, outcome in runs:
            prev = last.get(cid)
            due = initial[cid] if prev is None else prev[1] + timedelta(seconds=EVERY)
            if started >= warm:
                lags.append((started - due).total_seconds())
                by_minute.setdefault(int((started - warm).total_seconds() // 60), []).append(lags[-1])
                if finished is not None:
                    durations.append((finished - started).total_seconds() * 1000)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                if prev is not None:
                    gaps.append((started - prev[0]).total_seconds())
            last[cid] = (started, finished or started)
        # Due for more than two intervals without a poll, at the end of the run.
        overdue = 0
        for pk, due0 in initial.items():
            prev = last.get(pk)
            due = due0 if prev is None else prev[1] + timedelta(seconds=EVERY)
            if (end - due).total_seconds() > 2 * EVERY:
                overdue += 1
        measured = (end - warm).total_seconds()
        polls = len(lags)
        target = args.target if args.target == "closed" else f"dovecot, {args.dovecot_mode} mode"
        print(f"scale ({target}): {n} connections every {EVERY} s, {args.minutes:g} min "
              f"(first interval = warm-up, not counted); beat + worker --concurrency "
              f"{concurrency()}, POLL_TASK_BATCH={settings.POLL_TASK_BATCH}, "
              f"POLL_DISPATCH_INTERVAL={settings.POLL_DISPATCH_INTERVAL:g} s")
        print(f"polls started: {polls} in {measured:.0f} s = {polls / measured:.1f}/s "
              f"(needed {n / EVERY:.1f}/s); outcomes {outcomes}")
        print(f"dispatch lag (due -> poll started): p50 {percentile(lags, .5):.1f} s, p95 {percentile(lags, .95):.1f} s, "
              f"max {max(lags, default=float('nan')):.1f} s  (goal p95 < 10 s)")
        print("lag p95 by minute of the measured run: " + ", ".join(
            f"{percentile(v, .95):.1f} s" for _, v in sorted(by_minute.items())))
        print(f"poll duration (started -> finished, in the worker): p50 {percentile(durations, .5):.0f} ms, "
              f"p95 {percentile(durations, .95):.0f} ms")
        print(f"longest gap between two polls of one connection: {max(gaps, default=float('nan')):.1f} s; "
              f"connections due for more than two intervals without a poll at the end: {overdue} (goal 0)")
        print(f"CPU of beat + worker processes: {children_cpu:.0f} s = {children_cpu / max(1, len(runs)) * 1000:.2f} ms "
              f"per poll")
        per_poll = {k: (cpu1.get(k, 0.0) - cpu0.get(k, 0.0)) / max(1, len(runs)) * 1000 for k in cpu1}
        print("  while the run lasted, ms of CPU per poll: " + ", ".join(f"{k} {v:.2f}" for k, v in per_poll.items()))
        if servers is not None:
            print(f"CPU of the Dovecot processes (logins, TLS, IMAP sessions): {servers_cpu:.0f} s = "
                  f"{servers_cpu / max(1, len(runs)) * 1000:.2f} ms per poll")
        print(f"the machine's CPUs were busy {busy * 100:.0f} % of the run (every process: ours, PostgreSQL, "
              f"Redis, the mail servers, anything else)")
        print(machine_note())
    finally:
        stop_reset.set()
        for proc in procs:
            stop(proc)
        if servers is not None:
            servers.stop()
        from django.db import connections as conns

        conns.close_all()
        django_teardown(DB)


if __name__ == "__main__":
    main()
