"""sending.py: no transaction is open while talking to the server."""
from __future__ import annotations

import pytest
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from connections.mail import smtp
from connections.models import OutboxMessage, OutboxStatus
from connections.services.outbound import enqueue, sending


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
