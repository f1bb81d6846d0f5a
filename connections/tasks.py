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
def dispatch_outbox() -> None:
    """Placeholder until the outbox lands."""
