"""writer.py: outcomes group-committed in order with each "DATA started", only while still ours."""
from __future__ import annotations

import pytest
from django.utils import timezone

from connections.models import OutboxMessage, OutboxStatus
from connections.services.outbound import enqueue, sending, writer
from connections.services.outbound.claims import claim
from connections.services.outbound.writer import log_entry, record_outcomes


def _enqueue(conn, to: str, **kw) -> OutboxMessage:
    return enqueue.enqueue(connection_id=conn.pk, to=[to], subject=to, text="t", dispatch=False, **kw)


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
def test_a_barrier_after_sent_outcomes_is_one_statement(make_connection, monkeypatch):
    """Sent outcomes carry followup=None: with "DATA started" they go out as ONE statement
    (one round trip), not as a transaction of several (the per-message barrier's cost)."""
    conn = make_connection()
    msgs = [_enqueue(conn, f"b{i}@example.test") for i in range(2)]
    first, second = claim(conn, 10, None)

    def no_transaction(jobs):
        raise AssertionError("the one-statement path was not taken")

    monkeypatch.setattr(writer, "_record_in_one_transaction", no_transaction)
    sent = {"status": OutboxStatus.SENT, "sent_at": timezone.now(), "attempts": 1, "last_error": "",
            "next_attempt_at": None, "delivery_log": [log_entry("sent", "ok")], "followup": None}
    done = record_outcomes([(first, sent), (second, {"progress": "data"})])
    assert done == {msgs[0].pk, msgs[1].pk}
    assert OutboxMessage.objects.get(pk=msgs[0].pk).status == OutboxStatus.SENT
    assert OutboxMessage.objects.get(pk=msgs[1].pk).progress == "data"
