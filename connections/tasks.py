"""Celery tasks: thin and idempotent, taking ids (never secrets), calling services."""
from __future__ import annotations

from celery import shared_task

# --- inbound (polling)


@shared_task(name="connections.tasks.dispatch_due_polls", ignore_result=True)
def dispatch_due_polls() -> None:
    """Placeholder until inbound polling lands."""


@shared_task(name="connections.tasks.prune_poll_history", ignore_result=True)
def prune_poll_history() -> None:
    """Placeholder until inbound polling lands."""


# --- outbound (outbox)


@shared_task(name="connections.tasks.dispatch_outbox", ignore_result=True)
def dispatch_outbox() -> int:
    """Beat: one query for the connections with due messages; one send task for each."""
    from .services import outbox

    ids = outbox.dispatch_due()
    for connection_id in ids:
        outbox.kick(connection_id=connection_id)
    return len(ids)


@shared_task(name="connections.tasks.send_outbox", ignore_result=True)
def send_outbox(connection_id: int) -> str:
    """Send a connection's due messages (claims with SKIP LOCKED: safe to run twice)."""
    from .services import outbox

    return str(outbox.send_due(connection_id=connection_id))
