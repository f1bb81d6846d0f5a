"""Due polls: claiming them in one SELECT and one UPDATE; polling a batch in turn."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections.models import InboundConnection, PollOutcome, PollRun, StoredMessage
from connections.services.inbound import dispatch

from .mails import make_mail


def _connections(tenant, n: int, **fields) -> list[int]:
    rows = [InboundConnection(tenant=tenant, name=f"c{i}-{uuid.uuid4().hex[:6]}", host="127.0.0.1",
                              credential_name="x", **fields) for i in range(n)]
    return [c.pk for c in InboundConnection.objects.bulk_create(rows)]


@pytest.mark.django_db(transaction=True)
def test_claim_due_is_one_select_and_one_update(tenant):
    now = timezone.now()
    due = _connections(tenant, 30, next_poll_at=now - timedelta(seconds=5))
    never = _connections(tenant, 2, next_poll_at=None)  # new: due at once
    _connections(tenant, 5, next_poll_at=now + timedelta(minutes=5))  # not yet
    _connections(tenant, 5, next_poll_at=now - timedelta(minutes=5), enabled=False)
    _connections(tenant, 5, next_poll_at=now - timedelta(minutes=5), backoff_until=now + timedelta(minutes=1))
    with CaptureQueriesContext(db_connection) as queries:
        ids = dispatch.claim_due(now=now)
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT"))]
    # Besides the asynchronous commit's set_config (tests/persistence/test_commits.py).
    statements = [s for s in statements if "synchronous_commit" not in s]
    assert [s.split()[0] for s in statements] == ["SELECT", "UPDATE"], statements
    assert sorted(ids) == sorted(due + never)
    # Claimed rows are pushed out: a second tick right away finds nothing.
    assert dispatch.claim_due(now=now) == []
    assert all(c.next_poll_at > now for c in InboundConnection.objects.filter(pk__in=ids))


@pytest.mark.django_db(transaction=True)
@pytest.mark.mailservers
def test_a_batch_polls_each_connection_in_turn_and_skips_a_deleted_one(mail_servers, make_inbound):
    conns = []
    for i in range(2):
        address, password = mail_servers.add_user()
        mail_servers.append(address, [make_mail(f"batch {i}")])
        conns.append(make_inbound(address, password))
    gone = make_inbound(*mail_servers.add_user())
    gone_id = gone.pk
    gone.delete()
    assert dispatch.batches([1, 2, 3, 4, 5], size=2) == [[1, 2], [3, 4], [5]]
    assert dispatch.poll_each(connection_ids=[conns[0].pk, gone_id, conns[1].pk]) == 2
    for i, conn in enumerate(conns):
        assert PollRun.objects.get(connection=conn).outcome == PollOutcome.SUCCESS
        assert StoredMessage.objects.get(connection=conn).subject == f"batch {i}"
