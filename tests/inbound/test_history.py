"""Poll history pruning."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import InboundConnection, PollOutcome, PollRun
from connections.services.inbound import history


@pytest.mark.django_db(transaction=True)
def test_prune_history(tenant, settings):
    conn = InboundConnection.objects.create(tenant=tenant, name="p", host="h")
    old = timezone.now() - timedelta(days=40)
    PollRun.objects.create(tenant=tenant, connection=conn, started_at=old, outcome=PollOutcome.SUCCESS)
    PollRun.objects.create(tenant=tenant, connection=conn, started_at=old, outcome=PollOutcome.RUNNING)
    recent = PollRun.objects.create(tenant=tenant, connection=conn, started_at=timezone.now(), outcome=PollOutcome.SUCCESS)
    settings.POLL_HISTORY_RETENTION_DAYS = 30
    assert history.prune_history() == 1
    assert PollRun.objects.filter(pk=recent.pk).exists()
    stale = PollRun.objects.get(started_at=old)
    assert stale.outcome == PollOutcome.FAILED and "worker stopped" in stale.error
