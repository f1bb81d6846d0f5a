"""enqueue.enqueue_many: many messages in one transaction (COPY on PostgreSQL), from the email backend too."""
from __future__ import annotations

import pytest
from django.core import mail
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections.errors import ValidationError
from connections.models import OutboxMessage, OutboxStatus
from connections.services.outbound import enqueue, sending
from connections.services.persistence import outbound as persistence

pytestmark = pytest.mark.django_db


@pytest.mark.smoke
def test_enqueue_many_stores_all_in_one_transaction_or_nothing(make_connection, invoice):
    conn = make_connection()
    items = [{"to": [f"u{i}@example.test"], "subject": f"m{i}", "text": "x"} for i in range(5)]
    items.append({"to": ["t@example.test"], "template": "invoice", "context": {"number": 1, "customer": "C",
                                                                                "amount": "1"}})
    with CaptureQueriesContext(db_connection) as queries:
        result = enqueue.enqueue_many(connection_id=conn.pk, messages=items, dispatch=False)
    assert [m.subject for m in result.messages] == ["m0", "m1", "m2", "m3", "m4", "Invoice 1 for C"]
    assert all(m.pk for m in result.messages) and OutboxMessage.objects.count() == 6
    inserts = [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1  # one INSERT for all of them
    bad = items[:2] + [{"to": ["not an address"], "subject": "bad"}]
    with pytest.raises(ValidationError, match="Message 3: To:"):
        enqueue.enqueue_many(connection_id=conn.pk, messages=bad)
    assert OutboxMessage.objects.count() == 6  # nothing of the failed call
    skipped = enqueue.enqueue_many(connection_id=conn.pk, messages=bad, skip_invalid=True, dispatch=False)
    assert len(skipped) == 2 and skipped.errors[0][0] == 2


def test_the_email_backend_queues_a_batch_with_enqueue_many(make_connection, monkeypatch):
    conn = make_connection(name="smtp-main")
    calls = []
    real = enqueue.enqueue_many

    def spy(**kwargs):
        calls.append(len(kwargs["messages"]))
        return real(**kwargs)

    monkeypatch.setattr(enqueue, "enqueue_many", spy)
    with mail.get_connection("connections.backends.TenantMailBackend", tenant=conn.tenant.slug,
                             connection="smtp-main") as backend:
        sent = backend.send_messages([mail.EmailMessage(f"s{i}", "body", to=[f"u{i}@example.test"])
                                      for i in range(20)])
    assert sent == 20 and calls == [20]
    assert OutboxMessage.objects.filter(connection=conn).count() == 20


@pytest.mark.django_db(transaction=True)  # send_due runs outside a transaction, as in a worker
def test_enqueue_many_due_messages_are_sent(make_connection, fault):
    conn = make_connection(port=fault.port)
    later = timezone.now() + timezone.timedelta(hours=1)
    result = enqueue.enqueue_many(connection_id=conn.pk, dispatch=False, messages=[
        {"to": ["a@example.test"], "subject": "now", "text": "x"},
        {"to": ["b@example.test"], "subject": "later", "text": "x", "send_after": later}])
    assert sending.send_due(connection_id=conn.pk).sent == 1
    assert [OutboxMessage.objects.get(pk=m.pk).status for m in result.messages] == ["sent", "queued"]


@pytest.mark.django_db(transaction=True)  # send_due runs outside a transaction, as in a worker
def test_a_big_batch_goes_in_by_copy_on_postgresql_and_every_field_lands(make_connection, fault):
    conn = make_connection(port=fault.port)
    later = timezone.now() + timezone.timedelta(hours=2)
    items = [{"to": [f"u{i}@example.test"], "cc": ["Zoë <c@example.test>"], "bcc": ["b@example.test"],
              "subject": f"Grüße {i}", "text": f"body {i}", "html": "<p>ü</p>" if i % 2 else "",
              "extra_headers": {"X-Batch": str(i)}, "priority": i % 3,
              **({"send_after": later} if i == 0 else {})} for i in range(persistence.COPY_MIN + 5)]
    with CaptureQueriesContext(db_connection) as queries:
        result = enqueue.enqueue_many(connection_id=conn.pk, messages=items, dispatch=False)
    if db_connection.vendor == "postgresql":
        assert not any(q["sql"].startswith("INSERT") for q in queries.captured_queries)  # COPY
    stored = {m.pk: m for m in OutboxMessage.objects.filter(connection=conn)}
    assert sorted(stored) == sorted(m.pk for m in result.messages)
    for given, made in zip(items, result.messages):
        got = stored[made.pk]
        assert (got.subject, got.to, got.cc, got.bcc, got.extra_headers, got.priority) == (
            given["subject"], given["to"], given["cc"], given["bcc"], given["extra_headers"], given["priority"])
        assert bytes(got.mime) == bytes(made.mime) and got.size == len(bytes(made.mime))
        assert got.tenant_id == conn.tenant_id and got.created_at and got.status == OutboxStatus.QUEUED
        assert got.envelope_to == [given["to"][0], "c@example.test", "b@example.test"]
    assert stored[result.messages[0].pk].send_after == later
    assert sending.send_due(connection_id=conn.pk).sent == len(items) - 1
    assert len(fault.accepted) == len(items) - 1
