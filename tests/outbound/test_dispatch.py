"""dispatch.py: beat's dispatch finds the connections with due messages and no worker on them."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import OutboxMessage, OutboxStatus
from connections.services.outbound import dispatch

from .helpers import queue_one


@pytest.mark.django_db
def test_dispatch_due_one_query_finds_connections_with_due_messages(make_connection, django_assert_num_queries):
    due_conn, later_conn, busy_conn, disabled_conn, empty_conn = (make_connection() for _ in range(5))
    queue_one(due_conn)
    queue_one(later_conn, send_after=timezone.now() + timedelta(hours=1))
    queue_one(busy_conn)
    busy = queue_one(busy_conn)
    OutboxMessage.objects.filter(pk=busy.pk).update(status=OutboxStatus.SENDING, claimed_at=timezone.now(),
                                                    lease_until=timezone.now() + timedelta(seconds=60))
    queue_one(disabled_conn)
    disabled_conn.enabled = False
    disabled_conn.save()
    with django_assert_num_queries(2):  # nothing to recover (one query), then the dispatch query
        ids = dispatch.dispatch_due()
    assert ids == [due_conn.pk]
    # a crashed worker's `sending` rows do not block the connection once its lease ran out:
    # they are back in the queue by themselves (their data never started)
    OutboxMessage.objects.filter(pk=busy.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert sorted(dispatch.dispatch_due()) == sorted([due_conn.pk, busy_conn.pk])
    assert OutboxMessage.objects.get(pk=busy.pk).status == OutboxStatus.QUEUED
