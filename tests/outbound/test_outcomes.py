"""outcomes.py: recording an outcome never overwrites what an operator changed meanwhile."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import OutboxMessage, OutboxStatus
from connections.services.outbound import actions, outcomes
from connections.services.outbound.claims import claim

from .helpers import queue_one, status_of


@pytest.mark.django_db
def test_a_recording_after_an_operator_requeue_does_not_overwrite_it(make_connection):
    """A slow worker whose message was requeued as stale must not clobber the new state."""
    conn = make_connection()
    msg = queue_one(conn)
    [claimed] = claim(conn, 1, None)
    OutboxMessage.objects.filter(pk=msg.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
    assert actions.requeue(message_ids=[msg.pk]).changed == 1
    outcomes.record_sent(claimed, ["a@example.test"], {})
    assert status_of(msg) == OutboxStatus.QUEUED
