"""Benchmark: IMAP IDLE push — mail appended on the server -> stored, with 1, 100 and 1,000
IDLE mailboxes held by ONE `manage.py run_idle` process, against the real Dovecot.

    .venv/bin/python bench/idle.py                 # 1, 100, 1000 mailboxes
    .venv/bin/python bench/idle.py --sizes 1 100   # fewer

Per size: a fresh run_idle process claims the push connections and opens their IDLE sessions
(one event loop); a real Celery worker (2 processes) runs the polls. Then, in 3 rounds of 20
samples, one mail is appended to a random push mailbox (a new IMAP connection + APPEND: its
login is counted in the latency, so the figures are conservative) and the time until the mail
is stored (its row committed) is measured. Printed: p50/p95 latency (medians over the rounds),
run_idle's resident memory with all sessions up after the samples (VmRSS) and its peak while
logging them all in (VmHWM), its CPU-seconds per session (connect) and per pushed mail. Goals (issue 18): p95 < 2 s and RSS < 150 MB at 1,000.

There is no contender to interleave with: the reference is the schedule, whose latency is
half the polling interval on average (150 s at the default 300 s).

Needs PostgreSQL, Redis and root (Dovecot), like the tests.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound_common import ROOT, django_setup, django_teardown, machine_note, make_connection  # noqa: E402

# 1,000 concurrent TLS sessions: login processes serving many clients, enough imap processes.
DOVECOT_LIMITS = """
default_client_limit = 6000
default_process_limit = 3000
service imap-login {
  service_count = 0
  client_limit = 3000
  process_min_avail = 2
}
service imap {
  process_limit = 3000
}
"""
ROUNDS, SAMPLES = 3, 20


INOTIFY = Path("/proc/sys/fs/inotify/max_user_instances")


def _inotify_room(sessions: int) -> str:
    """Dovecot watches each IDLE mailbox with an inotify instance, all under the one mail
    user: past the kernel's per-user limit (128 by default) it falls back to looking every
    30 s (mailbox_idle_check_interval), which is the server's latency, not ours. Raise the
    limit when allowed, else say so."""
    want = sessions + 512
    try:
        if int(INOTIFY.read_text()) < want:
            INOTIFY.write_text(str(want))
        return f"fs.inotify.max_user_instances = {INOTIFY.read_text().strip()}"
    except OSError as exc:
        return (f"WARNING: cannot raise fs.inotify.max_user_instances ({exc.strerror}): Dovecot checks "
                "mailboxes only every 30 s beyond its limit; latencies then measure Dovecot")


def _env(db_name: str) -> dict:
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db_name}", "LOG_LEVEL": "WARNING"}
    env.pop("TM_TEST_DB", None)
    return env


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int, key: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or its peak so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1000])
    args = parser.parse_args()
    db_name = f"tm_bench_idle_{uuid.uuid4().hex[:6]}"
    django_setup(db_name)
    sys.path.insert(0, str(ROOT))
    from tests.mailservers import start_mail_servers

    servers = start_mail_servers(dovecot_extra=DOVECOT_LIMITS)
    worker = None
    try:
        from django.utils import timezone

        from connections.models import InboundConnection, PollRun, PushLease, PushState, StoredMessage

        biggest = max(args.sizes)
        print(f"creating {biggest} mailboxes and push connections …", flush=True)
        boxes = []
        for _ in range(biggest):
            address, password = servers.add_user()
            conn = make_connection(servers, address, password, push=False, schedule_every=86400,
                                   next_poll_at=timezone.now() + timedelta(days=1), timeout=30)
            boxes.append((conn.pk, address))
        env = _env(db_name)
        worker = subprocess.Popen(
            [str(ROOT / ".venv/bin/celery"), "-A", "tenantmail", "worker", "--concurrency", "2", "--loglevel",
             "WARNING", "--without-gossip", "--without-mingle", "--hostname", f"bench-{uuid.uuid4().hex[:6]}@%h"],
            cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        print(machine_note())
        print(_inotify_room(biggest))
        print(f"{'mailboxes':>9}  {'p50 s':>7}  {'p95 s':>7}  {'max s':>7}  {'RSS MB':>7}  {'peak MB':>7}  {'connect s':>9}  "
              f"{'CPU-s/session':>13}  {'CPU-s/mail':>10}")
        for size in args.sizes:
            ids = [pk for pk, _ in boxes[:size]]
            InboundConnection.objects.update(push=False)
            InboundConnection.objects.filter(pk__in=ids).update(push=True)
            PushLease.objects.all().delete()
            PollRun.objects.all().delete()
            started = time.monotonic()
            idle = subprocess.Popen(
                [sys.executable, "manage.py", "run_idle", "--tick", "1", "--max-sessions", "5000"],
                cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                _wait(lambda: PushLease.objects.filter(connection_id__in=ids, state=PushState.IDLE).count() == size,
                      600, f"{size} IDLE sessions")
                connect_s = time.monotonic() - started
                cpu_connect = _cpu_seconds(idle.pid)
                # The catch-up polls of the connect (one per connection) must be done first.
                _wait(lambda: PollRun.objects.filter(connection_id__in=ids, trigger="push")
                      .exclude(outcome="running").values("connection_id").distinct().count() >= size,
                      900, "the catch-up polls")
                p50s, p95s, maxes = [], [], []
                cpu_before = _cpu_seconds(idle.pid)
                for _round in range(ROUNDS):
                    latencies = []
                    for _ in range(SAMPLES):
                        pk, address = random.choice(boxes[:size])
                        have = StoredMessage.objects.filter(connection_id=pk).count()
                        t0 = time.monotonic()
                        servers.append(address, [f"Subject: push {uuid.uuid4().hex}\r\n\r\nbody\r\n".encode()])
                        _wait(lambda: StoredMessage.objects.filter(connection_id=pk).count() > have, 60,
                              "the pushed mail")
                        latencies.append(time.monotonic() - t0)
                        time.sleep(0.1)
                    p50s.append(statistics.median(latencies))
                    p95s.append(percentile(latencies, 95))
                    maxes.append(max(latencies))
                cpu_mail = (_cpu_seconds(idle.pid) - cpu_before) / (ROUNDS * SAMPLES)
                rss, peak = _rss_mb(idle.pid), _rss_mb(idle.pid, "VmHWM")  # all sessions up, after the samples
                print(f"{size:>9}  {statistics.median(p50s):>7.3f}  {statistics.median(p95s):>7.3f}  "
                      f"{max(maxes):>7.3f}  {rss:>7.1f}  {peak:>7.1f}  {connect_s:>9.1f}  {cpu_connect / size:>13.5f}  "
                      f"{cpu_mail:>10.5f}", flush=True)
            finally:
                os.killpg(idle.pid, signal.SIGTERM)
                idle.wait(timeout=60)
        print(machine_note())
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        servers.stop()
        from django.db import connections

        connections.close_all()
        django_teardown(db_name)


if __name__ == "__main__":
    main()
