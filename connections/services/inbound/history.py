"""Poll history: the latest runs of a connection, and pruning old ones."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from connections.conf import conf
from ...models import PollOutcome, PollRun


def recent_runs(*, connection_id: int, limit: int = 10) -> list[PollRun]:
    return list(PollRun.objects.filter(connection_id=connection_id).order_by("-started_at")[:limit])


def prune_history(*, days: int | None = None) -> int:
    days = days if days is not None else int(conf.POLL_HISTORY_RETENTION_DAYS)
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = PollRun.objects.filter(started_at__lt=cutoff).exclude(outcome=PollOutcome.RUNNING).delete()
    # A RUNNING row this old belongs to a worker that died: close it.
    PollRun.objects.filter(started_at__lt=cutoff, outcome=PollOutcome.RUNNING).update(
        outcome=PollOutcome.FAILED, finished_at=timezone.now(), error="The worker stopped during this poll."
    )
    return deleted
