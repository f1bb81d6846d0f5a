"""Signals for in-process code that reacts to mail (see docs/webhooks.md for an example).

Both are sent only after the rows are committed, with ids (never model instances or
secrets), from the thread that committed them:

- `message_stored(sender=StoredMessage, tenant_id=None|int, connection_id=int, message_ids=[int])`:
  new stored mails of one inbound connection (one signal per committed poll batch);
- `outbox_message_finished(sender=OutboxMessage, connection_id=int, sent=[int], failed=[int])`:
  outbox messages that reached `sent` or `failed` (no further automatic attempt).

A receiver must be quick (it runs on the poll's or the send's path): queue a Celery task
for anything slow. An exception in a receiver is logged and does not stop the poll.

    from django.dispatch import receiver
    from connections.signals import message_stored

    @receiver(message_stored)
    def on_new_mail(sender, connection_id, message_ids, **kwargs):
        my_app.tasks.import_orders.delay(message_ids)
"""
from __future__ import annotations

import logging
from typing import Iterable

from django.db import transaction
from django.dispatch import Signal

log = logging.getLogger(__name__)

message_stored = Signal()
outbox_message_finished = Signal()


def _send_robust(signal: Signal, **kwargs) -> None:
    from .models import OutboxMessage, StoredMessage

    sender = StoredMessage if signal is message_stored else OutboxMessage
    for receiver, result in signal.send_robust(sender=sender, **kwargs):
        if isinstance(result, Exception):
            log.error("receiver %r of %s failed: %s: %s", receiver, sender.__name__, type(result).__name__, result)


def notify_stored(*, connection_id: int, message_ids: Iterable[int], tenant_id: int | None = None) -> None:
    """Send `message_stored` once the current transaction commits (now, outside one)."""
    ids = [int(i) for i in message_ids if i]
    if ids:
        transaction.on_commit(lambda: _send_robust(message_stored, connection_id=connection_id,
                                                   message_ids=ids, tenant_id=tenant_id))


def notify_outbox_finished(*, connection_id: int, outcomes: Iterable) -> None:
    """Send `outbox_message_finished` for the outcomes (services.outbound.outcomes.MessageOutcome) that
    are final — status "sent" or "failed" — once the current transaction commits."""
    outcomes = list(outcomes)
    sent = [o.message_id for o in outcomes if o.status == "sent"]
    failed = [o.message_id for o in outcomes if o.status == "failed"]
    if sent or failed:
        transaction.on_commit(lambda: _send_robust(outbox_message_finished, connection_id=connection_id,
                                                   sent=sent, failed=failed))
