"""Transactions while sending: none open during SMTP, outcomes group-committed, never lost."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from connections.mail import smtp
from connections.models import OutboxMessage, OutboxStatus
from connections.services.outbound import claims, enqueue, sending, writer
from connections.services.outbound.claims import MimeLoader, claim
from connections.services.outbound.writer import log_entry, record_outcomes


def _enqueue(conn, to: str, **kw) -> OutboxMessage:
    return enqueue.enqueue(connection_id=conn.pk, to=[to], subject=to, text="t", dispatch=False, **kw)


def _old_transactions(since) -> list[tuple]:
    """Other sessions of this database sitting in a transaction that began before `since`."""
    with db_connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, xact_start FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL AND xact_start < %s",
            [since],
        )
        return cursor.fetchall()


@pytest.mark.django_db(transaction=True)
def test_no_transaction_is_open_while_talking_to_the_server(make_connection, fault, monkeypatch):
    """The claim commits before the session; outcomes commit in short transactions of their
    own; none of them spans an SMTP exchange (checked on the sender's connection and, through
    pg_stat_activity, on every other connection of the test database)."""
    conn = make_connection(port=fault.port)
    msgs = [_enqueue(conn, f"m{i}@example.test") for i in range(5)]
    real_send = smtp.SMTPClient.send
    seen: list[tuple[bool, list]] = []
    first_send: list = []

    def observed_send(self, **kwargs):
        if not first_send:
            first_send.append(timezone.now())
        # A transaction that began before the first SMTP exchange and is still open now
        # would span the network I/O in between.
        seen.append((transaction.get_connection().in_atomic_block, _old_transactions(first_send[0])))
        return real_send(self, **kwargs)

    monkeypatch.setattr(smtp.SMTPClient, "send", observed_send)
    report = sending.send_due(connection_id=conn.pk)
    assert report.sent == 5, str(report)
    assert len(seen) == 5
    assert [in_atomic for in_atomic, _ in seen] == [False] * 5
    assert [old for _, old in seen] == [[]] * 5
    assert {m.status for m in OutboxMessage.objects.filter(pk__in=[m.pk for m in msgs])} == {OutboxStatus.SENT}


@pytest.mark.django_db(transaction=True)
def test_outcomes_are_group_committed_in_order_and_all_recorded(make_connection, fault, monkeypatch):
    """Outside a transaction the writer commits outcomes in groups (one statement or one
    transaction each), with the next message's "DATA started"; every outcome lands."""
    monkeypatch.setattr(writer.Writer, "GROUP_MAX", 4)
    groups: list[list[int]] = []
    real = writer.record_outcomes

    def recording(jobs):
        groups.append([(item.id, values.get("status") or values.get("progress")) for item, values in jobs])
        return real(jobs)

    monkeypatch.setattr(writer, "record_outcomes", recording)
    conn = make_connection(port=fault.port)
    specs = ["ok0", "data451-a", "ok1", "rcpt452-b", "ok2", "data550-c", "ok3", "ok4", "ok5", "ok6"]
    msgs = [enqueue.enqueue(connection_id=conn.pk, subject=s, text="t", dispatch=False, priority=100 - i,
                           to=[f"{s}@example.test", "also@example.test"] if s.startswith("rcpt") else
                           [f"{s}@example.test"])
            for i, s in enumerate(specs)]
    report = sending.send_due(connection_id=conn.pk)
    writes = [w for g in groups for w in g]
    assert [pk for pk, what in writes if what in ("sent", "queued", "failed")] == [m.pk for m in msgs]
    assert all(len(g) <= 4 for g in groups)
    # each message's "DATA started" is committed after the outcome of the one before (a barrier)
    for before, after in zip(msgs, msgs[1:]):
        assert writes.index((before.pk, got_status(report, before.pk))) < writes.index((after.pk, "data"))
        assert any((after.pk, "data") == g[-1] for g in groups)  # the barrier ends its group
    got = {m.subject: OutboxMessage.objects.get(pk=m.pk) for m in msgs}
    assert [o.status for o in report.outcomes] == ["sent", "retry", "sent", "sent", "sent", "failed",
                                                   "sent", "sent", "sent", "sent"]
    for name in ("ok0", "ok1", "ok2", "ok3", "ok4", "ok5", "ok6"):
        assert got[name].status == OutboxStatus.SENT and got[name].sent_at and got[name].attempts == 1
        assert got[name].recipient_results[f"{name}@example.test"]["status"] == "accepted"
        assert [e["outcome"] for e in got[name].delivery_log] == ["sent"]
    assert got["data451-a"].status == OutboxStatus.QUEUED and got["data451-a"].next_attempt_at > timezone.now()
    assert got["data550-c"].status == OutboxStatus.FAILED and "550" in got["data550-c"].last_error
    # the partial one, with its follow-up message, written inside a group
    partial = got["rcpt452-b"]
    assert partial.status == OutboxStatus.SENT
    assert partial.recipient_results["rcpt452-b@example.test"]["code"] == 452
    assert partial.retries.get().envelope_to == ["rcpt452-b@example.test"]


def got_status(report, pk: int) -> str:
    outcome = next(o for o in report.outcomes if o.message_id == pk)
    return {"sent": "sent", "retry": "queued", "failed": "failed"}[outcome.status]


@pytest.mark.django_db(transaction=True)
def test_group_commit_does_not_overwrite_what_an_operator_changed_meanwhile(make_connection):
    """The grouped UPDATE writes a row only while it is still ours (sending, same claim)."""
    conn = make_connection()
    msgs = [_enqueue(conn, f"m{i}@example.test") for i in range(3)]
    claimed = claim(conn, 10, None)
    assert [c.id for c in claimed] == [m.pk for m in msgs]
    # An operator cancels the second one (as if it were stale) while it is being sent.
    OutboxMessage.objects.filter(pk=msgs[1].pk).update(status=OutboxStatus.CANCELLED)
    now = timezone.now()
    jobs = [(item, {"status": OutboxStatus.SENT, "sent_at": now, "attempts": 1, "last_error": "",
                    "recipient_results": {item.envelope_to[0]: {"status": "accepted"}},
                    "next_attempt_at": None, "delivery_log": [log_entry("sent", "ok")], "followup": None})
            for item in claimed]
    record_outcomes(jobs)
    statuses = dict(OutboxMessage.objects.values_list("pk", "status"))
    assert statuses == {msgs[0].pk: "sent", msgs[1].pk: "cancelled", msgs[2].pk: "sent"}
    first = OutboxMessage.objects.get(pk=msgs[0].pk)
    assert first.recipient_results == {"m0@example.test": {"status": "accepted"}}
    assert first.delivery_log[0]["outcome"] == "sent" and first.sent_at == now


@pytest.mark.django_db(transaction=True)
def test_mime_is_loaded_in_growing_chunks_in_order(make_connection, monkeypatch):
    monkeypatch.setattr(claims, "MIME_CHUNK_BYTES", 10**9)
    conn = make_connection()
    msgs = [_enqueue(conn, f"m{i}@example.test") for i in range(50)]
    batch = claim(conn, 100, None)
    with MimeLoader(batch) as loader:
        assert loader.chunks == [(0, 8), (8, 40), (40, 50)]
        for index, item in enumerate(batch):
            if item.mime is None:
                loader.fill(index)
            assert item.mime == bytes(msgs[index].mime)
