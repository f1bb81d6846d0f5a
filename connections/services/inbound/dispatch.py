"""Handing out due polls: which connections are due, claiming them (so that a slow queue
never gets the same poll twice), and polling them in small batches per Celery task.

Why batches: at 10,000 connections a minute the per-task cost of Celery — publishing one
message per poll at dispatch, receiving, acknowledging and tracing it in the worker — was
as large as a failing poll itself (bench/scale.py). A batch of POLL_TASK_BATCH ids pays it
once. What it costs: the polls of one batch run in turn, so a poll that waits for its
timeout delays the others of its batch (at most POLL_TASK_BATCH − 1 of them, by at most
that connection's timeout); POLL_TASK_BATCH=1 restores one task per poll.

Exactly-once is unchanged: each poll is the same poll() with the same lock and the same
unique constraints. A batch redelivered after a worker died re-polls its connections;
a second poll of a mailbox is harmless (it finds nothing new, or the lock).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from connections.conf import conf
from ...models import InboundConnection
from ..persistence.commits import asynchronous_commit
from .poll import poll

log = logging.getLogger(__name__)


def due_connections(*, now: datetime | None = None):
    now = now or timezone.now()
    return InboundConnection.objects.filter(enabled=True).filter(
        Q(next_poll_at__lte=now) | Q(next_poll_at__isnull=True)
    ).filter(Q(backoff_until__isnull=True) | Q(backoff_until__lte=now))


def claim_due(*, now: datetime | None = None, limit: int | None = None) -> list[int]:
    """Claim the due connections in one short transaction: one SELECT (skipping rows another
    dispatcher holds) and one UPDATE that pushes their next_poll_at out by the claim horizon,
    so that a slow queue never gets the same poll twice. The poll sets the real next run."""
    now = now or timezone.now()
    horizon = now + timedelta(seconds=int(conf.POLL_DISPATCH_CLAIM_SECONDS))
    limit = limit or int(conf.POLL_DISPATCH_MAX)
    with transaction.atomic():
        # Not waiting for the WAL flush: a disk that stalls an fsync would stall every
        # dispatch, and a claim lost in a database crash only dispatches those polls again.
        asynchronous_commit()
        ids = list(
            due_connections(now=now).order_by().select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit]
        )
        if ids:  # the due time is kept for the dispatch lag metric (same statement)
            InboundConnection.objects.filter(pk__in=ids).update(
                next_poll_at=horizon, dispatched_due_at=Coalesce(F("next_poll_at"), Value(now)))
    return ids


def batch_size() -> int:
    return max(1, int(conf.POLL_TASK_BATCH))


def batches(ids: list[int], *, size: int | None = None) -> list[list[int]]:
    """The claimed ids in batches of at most `size` (default POLL_TASK_BATCH)."""
    size = size or batch_size()
    return [ids[start:start + size] for start in range(0, len(ids), size)]


def poll_each(*, connection_ids: list[int], trigger: str = "schedule") -> int:
    """Poll the connections one after another; returns how many were polled. A deleted
    connection is skipped; an unexpected error in one poll does not stop the others."""
    done = 0
    for connection_id in connection_ids:
        try:
            poll(connection_id=int(connection_id), trigger=trigger)
            done += 1
        except InboundConnection.DoesNotExist:
            continue  # deleted while the task waited in the queue
        except Exception:  # poll() records mail and server trouble itself; this is a bug or the database
            log.exception("poll of inbound connection %s failed", connection_id)
    return done


def request_poll(*, connection_id: int, trigger: str = "manual") -> None:
    """Queue a poll of the connection now (sent when the current transaction commits)."""
    from ...tasks import poll_connection

    poll_connection.delay_on_commit(connection_id, trigger)
