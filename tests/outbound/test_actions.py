"""actions.py: the operator's requeue and cancel, within the user's tenants."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import OutboxMessage, OutboxStatus
from connections.services.outbound import actions
from connections.services.outbound.claims import claim

from .helpers import queue_one, status_of


@pytest.mark.django_db
def test_requeue_failed_cancelled_and_stale_sending_but_not_fresh_sending_or_sent(make_connection):
    conn = make_connection()
    failed, cancelled, stale, fresh, sent, queued = (queue_one(conn) for _ in range(6))
    now = timezone.now()
    OutboxMessage.objects.filter(pk=failed.pk).update(status=OutboxStatus.FAILED, attempts=5, last_error="x")
    OutboxMessage.objects.filter(pk=cancelled.pk).update(status=OutboxStatus.CANCELLED)
    OutboxMessage.objects.filter(pk=stale.pk).update(status=OutboxStatus.SENDING, claimed_at=now - timedelta(hours=1))
    OutboxMessage.objects.filter(pk=fresh.pk).update(status=OutboxStatus.SENDING, claimed_at=now)
    OutboxMessage.objects.filter(pk=sent.pk).update(status=OutboxStatus.SENT, sent_at=now)
    result = actions.requeue(message_ids=[m.pk for m in (failed, cancelled, stale, fresh, sent, queued)])
    assert (result.changed, result.skipped) == (3, 3)
    for m in (failed, cancelled, stale):
        got = OutboxMessage.objects.get(pk=m.pk)
        assert got.status == OutboxStatus.QUEUED and got.attempts == 0 and got.claimed_at is None
        assert got.next_attempt_at <= timezone.now()
        assert got.delivery_log[-1]["outcome"] == "requeued"
    assert status_of(fresh) == OutboxStatus.SENDING and status_of(sent) == OutboxStatus.SENT


@pytest.mark.django_db
def test_cancel_queued_and_stale_sending_only(make_connection):
    conn = make_connection()
    queued, stale, fresh, failed = (queue_one(conn) for _ in range(4))
    now = timezone.now()
    OutboxMessage.objects.filter(pk=stale.pk).update(status=OutboxStatus.SENDING, claimed_at=now - timedelta(hours=1))
    OutboxMessage.objects.filter(pk=fresh.pk).update(status=OutboxStatus.SENDING, claimed_at=now)
    OutboxMessage.objects.filter(pk=failed.pk).update(status=OutboxStatus.FAILED)
    result = actions.cancel(message_ids=[queued.pk, stale.pk, fresh.pk, failed.pk])
    assert (result.changed, result.skipped) == (2, 2)
    assert status_of(queued) == status_of(stale) == OutboxStatus.CANCELLED
    assert status_of(fresh) == OutboxStatus.SENDING and status_of(failed) == OutboxStatus.FAILED
    assert claim(conn, 10, None) == []  # cancelled is never sent


@pytest.mark.django_db
def test_requeue_and_cancel_respect_the_users_tenants(make_connection, tenant, django_user_model):
    from connections.models import Membership, Tenant

    conn = make_connection()
    other_tenant = Tenant.objects.create(name="Other", slug="other-t")
    other_conn = make_connection(tenant=other_tenant)
    mine, theirs = queue_one(conn), queue_one(other_conn)
    user = django_user_model.objects.create_user("op", password="x", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role="operator")
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    Membership.objects.create(user=viewer, tenant=tenant, role="viewer")
    assert actions.cancel(message_ids=[mine.pk, theirs.pk], user=viewer).changed == 0
    assert actions.cancel(message_ids=[mine.pk, theirs.pk], user=user).changed == 1
    assert status_of(mine) == OutboxStatus.CANCELLED and status_of(theirs) == OutboxStatus.QUEUED
