"""sending.py: send_due as workers run it — every outcome lands, an interruption loses nothing."""
from __future__ import annotations

import pytest

from connections.models import OutboxMessage, OutboxStatus
from connections.services.outbound import enqueue, outcomes, sending

from .helpers import queue_one, status_of


@pytest.mark.django_db(transaction=True)  # send_due runs outside a transaction, as in a worker
def test_an_exception_mid_batch_releases_the_untried_messages(make_connection, fault, monkeypatch):
    """A bug or kill signal while sending: untried messages go back to queued, none is lost."""
    conn = make_connection(port=fault.port)
    msgs = [queue_one(conn, f"m{i}@example.test") for i in range(3)]
    calls = {"n": 0}
    real = outcomes.record_sent

    def record_then_explode(item, accepted, refused, **kwargs):
        calls["n"] += 1
        outcome = real(item, accepted, refused, **kwargs)
        if calls["n"] == 1:
            raise KeyboardInterrupt  # e.g. the worker being told to stop
        return outcome

    monkeypatch.setattr(outcomes, "record_sent", record_then_explode)
    with pytest.raises(KeyboardInterrupt):
        sending.send_due(connection_id=conn.pk)
    statuses = sorted(status_of(m) for m in msgs)
    assert statuses == [OutboxStatus.QUEUED, OutboxStatus.QUEUED, OutboxStatus.SENT]


@pytest.mark.smoke
@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_outcomes_are_written_by_the_writer_thread(make_connection, fault):
    """Workers and the CLI run outside a transaction: outcomes go through the writer thread,
    in order, each committed; every state lands as in the synchronous path."""
    conn = make_connection(port=fault.port)
    specs = ["ok1", "rcpt550-a", "data451-b", "ok2", "data552-c", "ok3"]
    msgs = [enqueue.enqueue(connection_id=conn.pk, to=[f"{s}@example.test", "ok@example.test"]
                            if s == "rcpt550-a" else [f"{s}@example.test"], subject=s, dispatch=False,
                            priority=100 - i)
            for i, s in enumerate(specs)]
    report = sending.send_due(connection_id=conn.pk)
    got = {m.subject: OutboxMessage.objects.get(pk=m.pk) for m in msgs}
    assert [o.status for o in report.outcomes] == ["sent", "sent", "retry", "sent", "failed", "sent"]
    assert got["ok1"].status == got["ok2"].status == got["ok3"].status == OutboxStatus.SENT
    assert got["rcpt550-a"].status == OutboxStatus.SENT
    assert got["rcpt550-a"].recipient_results["rcpt550-a@example.test"]["code"] == 550
    assert got["data451-b"].status == OutboxStatus.QUEUED and got["data451-b"].attempts == 1
    assert got["data552-c"].status == OutboxStatus.FAILED and "552" in got["data552-c"].last_error
    assert fault.sessions == 1


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_an_interruption_loses_nothing(make_connection, fault, monkeypatch):
    conn = make_connection(port=fault.port)
    msgs = [queue_one(conn, f"m{i}@example.test") for i in range(4)]
    from connections.mail import smtp

    real_send = smtp.SMTPClient.send
    calls = {"n": 0}

    def send_then_stop(self, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the worker is told to stop before the third message
        return real_send(self, **kwargs)

    monkeypatch.setattr(smtp.SMTPClient, "send", send_then_stop)
    with pytest.raises(KeyboardInterrupt):
        sending.send_due(connection_id=conn.pk)
    statuses = sorted(status_of(m) for m in msgs)
    assert statuses == [OutboxStatus.QUEUED, OutboxStatus.QUEUED, OutboxStatus.SENT, OutboxStatus.SENT]
    assert len(fault.accepted) == 2
