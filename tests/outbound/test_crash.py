"""The at-least-once window, for real: a sending process killed before the server's final reply."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from connections.models import OutboxMessage, OutboxStatus
from connections.services import outbox

from .faultserver import FaultServer

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def _sender_process(connection_id: int, *, setup: str = "") -> subprocess.Popen:
    """`send_due` in a process of its own, on this test's database (`setup`: code run first)."""
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
    }
    code = (
        "import django; django.setup()\n"
        "from connections.services import outbox\n"
        f"{setup}\n"
        f"print(outbox.send_due(connection_id={connection_id}), flush=True)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=str(ROOT), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_killed_before_the_final_reply_stays_sending_then_requeue_delivers_again(make_connection, fault):
    slow = FaultServer(slow_seconds=60).start()
    try:
        conn = make_connection(port=slow.port, timeout=120)
        message = outbox.enqueue(connection_id=conn.pk, to=["slow-x@example.test"], subject="crash", text="x",
                                 dispatch=False)
        worker = _sender_process(conn.pk)
        deadline = time.monotonic() + 30
        while not slow.received and time.monotonic() < deadline:  # the server has the data now
            time.sleep(0.05)
        assert slow.received, worker.stderr.read().decode() if worker.poll() is not None else "no data"
        worker.send_signal(signal.SIGKILL)  # before the server's final reply
        worker.wait(10)
    finally:
        slow.stop()

    got = OutboxMessage.objects.get(pk=message.pk)
    assert got.status == OutboxStatus.SENDING and got.claimed_at is not None  # not lost, not resent
    assert outbox.send_due(connection_id=conn.pk).sessions == 0
    assert outbox.requeue(message_ids=[message.pk]).changed == 0  # not stale yet: it may still be in flight

    # Later, the operator sees it stale and requeues it: it is sent again, the same bytes.
    OutboxMessage.objects.filter(pk=message.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
    assert outbox.requeue(message_ids=[message.pk]).changed == 1
    conn.port = fault.port
    conn.save()
    outbox.send_due(connection_id=conn.pk)  # this server answers "slow-" after 3 s: within the timeout
    got = OutboxMessage.objects.get(pk=message.pk)
    assert got.status == OutboxStatus.SENT
    assert fault.accepted[0].data == slow.received[0].data == bytes(got.mime)  # a duplicate, same Message-ID


def test_killed_after_the_final_reply_before_the_group_commit_stays_sending(make_connection, fault):
    """Outcomes are group-committed: a worker killed after the server accepted messages, before
    their outcomes were committed, leaves them in `sending` — visible, requeueable, never put
    back to `queued` behind the operator's back."""
    conn = make_connection(port=fault.port)
    messages = [outbox.enqueue(connection_id=conn.pk, to=[f"m{i}@example.test"], subject=f"m{i}", text="x",
                               dispatch=False) for i in range(3)]
    # A group that never ends by itself: the outcomes stay in the writer until close().
    worker = _sender_process(conn.pk, setup="outbox._Writer.GROUP_WAIT = 3600.0\n"
                                           "outbox._Writer.close = lambda self: __import__('time').sleep(3600)")
    deadline = time.monotonic() + 30
    while len(fault.accepted) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(fault.accepted) == 3, worker.stderr.read().decode() if worker.poll() is not None else "not sent"
    time.sleep(0.3)
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)

    got = OutboxMessage.objects.filter(pk__in=[m.pk for m in messages])
    assert {m.status for m in got} == {OutboxStatus.SENDING}  # accepted by the server, outcome not recorded
    assert outbox.send_due(connection_id=conn.pk).sessions == 0  # not sent again by itself
    OutboxMessage.objects.filter(pk__in=[m.pk for m in messages]).update(
        claimed_at=timezone.now() - timedelta(hours=1))
    assert outbox.cancel(message_ids=[m.pk for m in messages]).changed == 3  # the operator decides
