"""Getting the outbox's messages to a worker: `kick` queues a send task for a connection (on
enqueue, after an operator's action); beat's `dispatch_due` finds the connections with due
messages and no worker on them, after recovering the messages of dead workers."""
from __future__ import annotations

import logging
from datetime import datetime

from django.db.models import Exists, OuterRef
from django.utils import timezone

from ...models import OutboundConnection, OutboxMessage, OutboxStatus
from . import policy, recovery

log = logging.getLogger(__name__)


def kick(*, connection_id: int) -> None:
    """Ask a worker to send a connection's due messages; the beat dispatcher is the safety net."""
    from ... import tasks  # tasks import services, not the other way round at import time

    try:
        tasks.send_outbox.apply_async((connection_id,), expires=policy.task_expiry())
    except Exception as exc:  # broker down: the message is stored; beat will dispatch it
        log.warning("outbox: could not enqueue send_outbox(%s): %s", connection_id, exc)


def dispatch_due(*, now: datetime | None = None) -> list[int]:
    """Ids of the enabled connections with due queued messages and no sender at work now.

    One query (after recovering the messages of dead workers). A connection with a live lease
    has a worker on it; that worker goes on with the next batch itself.
    """
    now = now or timezone.now()
    recovery.recover_expired(now=now)  # the messages of dead workers first
    due = OutboxMessage.objects.filter(
        connection=OuterRef("pk"), status=OutboxStatus.QUEUED, next_attempt_at__lte=now
    )
    busy = OutboxMessage.objects.filter(
        connection=OuterRef("pk"), status=OutboxStatus.SENDING, lease_until__gt=now
    )
    return list(
        OutboundConnection.objects.filter(enabled=True, tenant__active=True)
        .filter(Exists(due), ~Exists(busy))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
