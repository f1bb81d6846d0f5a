"""Parallel SMTP sessions per connection (OUTBOX_PARALLEL_SESSIONS, issue 21 item 5)."""
from __future__ import annotations

import threading

import pytest

from connections.mail import smtp
from connections.models import OutboxMessage, OutboxStatus
from connections.services.outbound import enqueue, sending

pytestmark = pytest.mark.django_db(transaction=True)  # outside a transaction: the real worker path


def _enqueue(conn, n: int) -> list[OutboxMessage]:
    return [enqueue.enqueue(connection_id=conn.pk, to=[f"p{i}@example.test"], subject=f"p{i}", text="x",
                            dispatch=False) for i in range(n)]


def test_two_sessions_at_once_each_with_its_own_batch(make_connection, fault, monkeypatch, settings):
    settings.OUTBOX_PARALLEL_SESSIONS = 2
    conn = make_connection(port=fault.port, max_per_session=3)
    msgs = _enqueue(conn, 6)
    both_open = threading.Barrier(2, timeout=20)  # broken (and the test failed) unless two sessions overlap
    first_of: set[str] = set()
    real_send = smtp.SMTPClient.send

    def send(self, **kwargs):
        name = threading.current_thread().name
        if name not in first_of:
            first_of.add(name)
            both_open.wait()
        return real_send(self, **kwargs)

    monkeypatch.setattr(smtp.SMTPClient, "send", send)
    report = sending.send_due(connection_id=conn.pk)
    assert report.sent == 6 and report.sessions == 2 and not report.error, str(report)
    assert fault.sessions == 2 and len(fault.accepted) == 6 and len(first_of) == 2
    rows = OutboxMessage.objects.filter(pk__in=[m.pk for m in msgs])
    assert {m.status for m in rows} == {OutboxStatus.SENT}
    claims = sorted(rows.values_list("claimed_at", flat=True))
    assert claims[0] != claims[3] and claims[0] == claims[2] and claims[3] == claims[5]  # 3 + 3


def test_parallel_sessions_stay_within_the_rate_limit(make_connection, fault, settings):
    settings.OUTBOX_PARALLEL_SESSIONS = 3
    conn = make_connection(port=fault.port, max_per_session=3, rate_limit_per_minute=4)
    msgs = _enqueue(conn, 10)
    report = sending.send_due(connection_id=conn.pk)
    statuses = [m.status for m in OutboxMessage.objects.filter(pk__in=[m.pk for m in msgs])]
    assert statuses.count(OutboxStatus.SENT) == 4 and statuses.count(OutboxStatus.QUEUED) == 6, str(report)
    assert len(fault.accepted) == 4


def test_one_session_when_set_to_one(make_connection, fault, settings):
    settings.OUTBOX_PARALLEL_SESSIONS = 1
    conn = make_connection(port=fault.port, max_per_session=2)
    _enqueue(conn, 5)
    report = sending.send_due(connection_id=conn.pk)
    assert report.sent == 5 and report.sessions == 3
    assert [r.rcpt_tos[0] for r in fault.accepted] == [f"p{i}@example.test" for i in range(5)]  # in order
