"""Crash recovery for real: sending processes killed with SIGKILL, recovered without an operator.

Deliveries are counted at the receiving server (the fault server) by Message-ID.
"""
from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from connections.models import OutboxMessage, OutboxStatus, SendProgress
from connections.services.outbound import actions, enqueue, prepare, recovery, sending
from tests.celery_worker import wait_until

from .faultserver import FaultServer

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
LEASE = 1.0  # the killed workers' lease, seconds


def _sender_process(connection_id: int, *, setup: str = "", lease: float = LEASE) -> subprocess.Popen:
    """`send_due` in a process of its own, on this test's database (`setup`: code run first)."""
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "OUTBOX_LEASE_SECONDS": str(lease),
    }
    code = (
        "import django; django.setup()\n"
        "from connections.services.outbound import sending, writer\n"
        f"{setup}\n"
        f"print(sending.send_due(connection_id={connection_id}), flush=True)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=str(ROOT), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(autouse=True)
def _no_worker_kicks(no_worker_kicks):
    """These tests drive the sending processes themselves (see the no_worker_kicks fixture)."""



def _recover_all(conn_id: int) -> recovery.RecoveryReport:
    """Recovery as beat runs it, once the dead worker's lease has run out (no operator)."""
    total = recovery.RecoveryReport()

    def done() -> bool:
        got = recovery.recover_expired(connection_id=conn_id)
        total.requeued += got.requeued
        total.uncertain += got.uncertain
        total.resent += got.resent
        return not OutboxMessage.objects.filter(connection_id=conn_id, status=OutboxStatus.SENDING).exists()

    wait_until(done, timeout=5 * LEASE + 10, message="the lease to run out")
    return total


def test_killed_before_the_final_reply_uncertain_one_the_rest_back_in_the_queue(make_connection, fault):
    slow = FaultServer(slow_seconds=60).start()
    try:
        conn = make_connection(port=slow.port, timeout=120)
        first = enqueue.enqueue(connection_id=conn.pk, to=["slow-x@example.test"], subject="crash", text="x",
                                dispatch=False, priority=10)
        rest = [enqueue.enqueue(connection_id=conn.pk, to=[f"r{i}@example.test"], subject="rest", text="x",
                                dispatch=False) for i in range(5)]
        worker = _sender_process(conn.pk)
        wait_until(lambda: slow.received or worker.poll() is not None, message="the data at the server", timeout=30)
        assert slow.received, worker.stderr.read().decode()
        worker.send_signal(signal.SIGKILL)  # before the server's final reply
        worker.wait(10)
    finally:
        slow.stop()

    got = OutboxMessage.objects.get(pk=first.pk)
    assert got.status == OutboxStatus.SENDING and got.progress == SendProgress.DATA
    assert sending.send_due(connection_id=conn.pk).sessions == 0  # the lease still holds: nothing claimed

    report = _recover_all(conn.pk)
    assert (report.uncertain, report.requeued) == (1, 5)
    got = OutboxMessage.objects.get(pk=first.pk)
    assert got.status == OutboxStatus.UNCERTAIN and "may have been delivered" in got.last_error
    assert {m.status for m in OutboxMessage.objects.filter(pk__in=[m.pk for m in rest])} == {OutboxStatus.QUEUED}

    # The operator resends it: the same bytes, the same Message-ID (a duplicate the receiver can spot).
    assert actions.resend_uncertain(message_ids=[first.pk]) == 1
    conn.port = fault.port
    conn.save()
    sending.send_due(connection_id=conn.pk)  # this server answers "slow-" after 3 s: within the timeout
    got = OutboxMessage.objects.get(pk=first.pk)
    assert got.status == OutboxStatus.SENT
    assert fault.accepted[0].data == bytes(got.mime)
    assert {m.status for m in OutboxMessage.objects.filter(pk__in=[m.pk for m in rest])} == {OutboxStatus.SENT}


def test_killed_with_outcomes_still_in_the_writer_at_most_one_is_uncertain(make_connection, fault):
    """Outcomes are buffered and committed with the next "DATA started": a worker killed with
    outcomes not yet written leaves at most its last message unknown."""
    conn = make_connection(port=fault.port)
    messages = [enqueue.enqueue(connection_id=conn.pk, to=[f"m{i}@example.test"], subject=f"m{i}", text="x",
                                dispatch=False) for i in range(3)]
    # Outcomes left in the writer at the session's end, and a process that never finishes.
    worker = _sender_process(conn.pk, setup="writer.Writer.flush = lambda self: __import__('time').sleep(3600)")
    wait_until(lambda: len(fault.accepted) == 3 or worker.poll() is not None, message="three deliveries", timeout=30)
    assert len(fault.accepted) == 3, worker.stderr.read().decode()
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)

    report = _recover_all(conn.pk)
    got = {m.subject: m for m in OutboxMessage.objects.filter(pk__in=[m.pk for m in messages])}
    assert (got["m0"].status, got["m1"].status, got["m2"].status) == ("sent", "sent", "uncertain")
    assert report.uncertain == 1 and report.requeued == 0


def _message_id(raw: bytes) -> str:
    return BytesHeaderParser().parsebytes(raw)["Message-ID"]


def test_sigkills_in_the_middle_of_big_batches_nothing_stuck_lost_or_doubled(make_connection, fault):
    """Many SIGKILLs of a real sending process at random moments of big batches: no message
    stuck without an operator, none lost, none delivered twice unless it was uncertain (this
    connection resends uncertain ones by itself). TM_CRASH_KILLS sets the number of kills
    (bench/outbound_crash.py runs it with 50)."""
    kills = int(os.environ.get("TM_CRASH_KILLS", "10"))
    total = int(os.environ.get("TM_CRASH_MESSAGES", str(max(300, 60 * kills))))
    rng = random.Random(int(os.environ.get("TM_CRASH_SEED", "19")))
    conn = make_connection(port=fault.port, max_per_session=50, resend_uncertain=True)
    messages = [prepare.prepare(connection_id=conn.pk, to=[f"k{i}@example.test"], subject=f"k{i}",
                                text=f"message {i}\n" * rng.randint(1, 200)) for i in range(total)]
    for prepared in messages:
        enqueue.store(prepared, dispatch=False)
    done_kills = 0
    while done_kills < kills:
        before = len(fault.accepted)
        if not OutboxMessage.objects.filter(connection_id=conn.pk, status=OutboxStatus.QUEUED).exists():
            break
        worker = _sender_process(conn.pk)
        target = before + rng.randint(1, 60)
        # Checked every 5 ms: at the fault server's pace a coarser check lets a worker send
        # dozens more before its kill, and the messages ran out before the last kills.
        wait_until(lambda: len(fault.accepted) >= target or worker.poll() is not None, timeout=60, interval=0.005,
                   message="deliveries before the kill")
        time.sleep(rng.random() * 0.02)  # anywhere in the SMTP exchange, not only right after a reply
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        done_kills += 1
        _recover_all(conn.pk)
    # The rest, without kills.
    for _ in range(10):
        if not OutboxMessage.objects.filter(connection_id=conn.pk).exclude(status=OutboxStatus.SENT).exists():
            break
        OutboxMessage.objects.filter(connection_id=conn.pk, status=OutboxStatus.QUEUED).update(
            next_attempt_at=timezone.now())
        worker = _sender_process(conn.pk)
        assert worker.wait(120) == 0, worker.stderr.read().decode()

    statuses = collections.Counter(OutboxMessage.objects.filter(connection_id=conn.pk)
                                   .values_list("status", flat=True))
    deliveries = collections.Counter(_message_id(r.data) for r in fault.accepted)
    expected = set(OutboxMessage.objects.filter(connection_id=conn.pk).values_list("message_id", flat=True))
    doubled = {mid for mid, n in deliveries.items() if n > 1}
    # How often each message was uncertain (a resent one can be caught by a later kill again).
    uncertain = collections.Counter({m.message_id: sum(e["outcome"] == "uncertain" for e in m.delivery_log)
                                     for m in OutboxMessage.objects.filter(connection_id=conn.pk)})
    uncertain_ids = {mid for mid, n in uncertain.items() if n}
    print(f"\ncrash test: {done_kills} SIGKILLs, {total} messages, {len(fault.accepted)} deliveries, "
          f"stuck {total - statuses.get('sent', 0)}, lost {len(expected - set(deliveries))}, "
          f"delivered twice {len(doubled)} (all uncertain: {doubled <= uncertain_ids}), "
          f"uncertain {sum(uncertain.values())} times ({len(uncertain_ids)} messages), "
          f"most copies of one message {max(deliveries.values())}")
    assert done_kills == kills
    assert statuses == {"sent": total}  # 0 stuck
    assert expected == set(deliveries)  # 0 lost
    assert doubled <= uncertain_ids  # 0 doubled, except uncertain ones
    # at most one per session the killed worker had open (OUTBOX_PARALLEL_SESSIONS at once)
    assert sum(uncertain.values()) <= done_kills * settings.OUTBOX_PARALLEL_SESSIONS
    assert all(n <= 1 + uncertain[mid] for mid, n in deliveries.items())  # each extra copy: an uncertain one


def test_progress_is_recorded_claimed_session_data_then_the_final_reply(make_connection, fault):
    """While a message is in the server's hands its row says how far it got."""
    slow = FaultServer(slow_seconds=60).start()
    try:
        conn = make_connection(port=slow.port, timeout=120)
        first = enqueue.enqueue(connection_id=conn.pk, to=["slow-x@example.test"], subject="a", text="x",
                                dispatch=False, priority=10)
        second = enqueue.enqueue(connection_id=conn.pk, to=["b@example.test"], subject="b", text="x",
                                 dispatch=False)
        worker = _sender_process(conn.pk, lease=1)
        wait_until(lambda: slow.received or worker.poll() is not None, message="the data at the server", timeout=30)
        rows = {m.pk: m for m in OutboxMessage.objects.filter(pk__in=[first.pk, second.pk])}
        assert rows[first.pk].progress == SendProgress.DATA  # committed before the data went out
        assert rows[second.pk].progress == SendProgress.SESSION  # claimed, session open, not tried
        # the worker's 1 s lease is renewed by its heartbeat while it lives (here: well past 1 s)
        renewed = timedelta(seconds=2.5)
        wait_until(lambda: OutboxMessage.objects.get(pk=second.pk).lease_until > rows[second.pk].claimed_at + renewed,
                   message="a renewed lease", timeout=30)
        assert recovery.recover_expired(connection_id=conn.pk).requeued == 0  # a live worker keeps its messages
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        slow.stop()
