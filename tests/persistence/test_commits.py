"""persistence.commits: which transactions commit without waiting for the WAL flush."""
from __future__ import annotations

import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections.models import Heartbeat, InboundConnection, Tenant
from connections.services.inbound import dispatch
from connections.services.monitoring import heartbeats
from connections.services.persistence.commits import asynchronous_commit

pytestmark = pytest.mark.django_db(transaction=True)  # PostgreSQL's synchronous_commit


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def test_only_the_outermost_transaction_and_only_until_it_ends():
    with transaction.atomic():
        asynchronous_commit()
        assert _synchronous_commit() == "off"
    assert _synchronous_commit() == "on"
    with transaction.atomic():
        with transaction.atomic():  # a caller's transaction around: its commit must stay synchronous
            asynchronous_commit()
        assert _synchronous_commit() == "on"


def _async_commits(run) -> int:
    with CaptureQueriesContext(connection) as queries:
        run()
    return sum("synchronous_commit" in q["sql"] for q in queries.captured_queries)


def test_beat_claims_and_heartbeats_commit_asynchronously():
    tenant = Tenant.objects.create(name="C", slug=f"c-{uuid.uuid4().hex[:8]}")
    InboundConnection.objects.create(tenant=tenant, name="due", host="imap.example", next_poll_at=timezone.now())
    assert _async_commits(lambda: dispatch.claim_due()) == 1
    assert _async_commits(lambda: heartbeats.record(name="beat-test", kind="beat")) == 1
    assert Heartbeat.objects.filter(name="beat-test").exists()
