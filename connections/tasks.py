"""Celery tasks: thin and idempotent, taking ids (never secrets), calling services."""
from __future__ import annotations

from celery import shared_task

from connections.conf import conf

# --- inbound (polling)


@shared_task(name="connections.tasks.dispatch_due_polls", ignore_result=True)
def dispatch_due_polls() -> int:
    """Beat: one query claims every due connection; their ids go out in batches of
    POLL_TASK_BATCH (`poll_connections`, services/inbound/dispatch.py). Up to
    POLL_DISPATCH_FANOUT batches are published right here; more are handed to fan_out_polls
    tasks in chunks of that many batches, so that beat's tick stays short."""
    
    from .services.inbound import dispatch

    batches = dispatch.batches(dispatch.claim_due())
    chunk = max(1, int(conf.POLL_DISPATCH_FANOUT))
    with poll_connections.app.producer_or_acquire() as producer:
        if len(batches) <= chunk:
            for batch in batches:
                poll_connections.apply_async((batch,), producer=producer)
        else:
            for start in range(0, len(batches), chunk):
                fan_out_polls.apply_async((batches[start:start + chunk],), producer=producer)
    return sum(len(batch) for batch in batches)


@shared_task(name="connections.tasks.fan_out_polls", ignore_result=True)
def fan_out_polls(batches: list) -> int:
    """Second stage of dispatch: one poll_connections task per batch of ids (already claimed
    by the dispatcher). A plain list of ids (from before batches) is one id per batch."""
    with poll_connections.app.producer_or_acquire() as producer:
        for batch in batches:
            ids = [int(i) for i in batch] if isinstance(batch, list) else [int(batch)]
            poll_connections.apply_async((ids,), producer=producer)
    return len(batches)


@shared_task(name="connections.tasks.poll_connections", ignore_result=True)
def poll_connections(connection_ids: list[int]) -> int:
    """Scheduled polls of a small batch of connections, one after another."""
    from .services.inbound import dispatch

    return dispatch.poll_each(connection_ids=connection_ids)


@shared_task(name="connections.tasks.poll_connection", ignore_result=True)
def poll_connection(connection_id: int, trigger: str = "schedule") -> str:
    """Poll one inbound connection (the mailbox lock makes a duplicate task harmless)."""
    from .models import InboundConnection
    from .services.inbound.poll import poll

    try:
        return poll(connection_id=connection_id, trigger=trigger).outcome
    except InboundConnection.DoesNotExist:
        return "deleted"  # the connection was deleted while the task waited in the queue


@shared_task(name="connections.tasks.parse_stored_messages", ignore_result=True)
def parse_stored_messages(connection_id: int) -> int:
    """Parse mails that were stored raw (deferred parsing)."""
    from .services.inbound import deferred

    return deferred.parse_pending(connection_id=connection_id)


@shared_task(name="connections.tasks.index_messages_for_search", ignore_result=True)
def index_messages_for_search() -> int:
    """Stored mails into the body search indexes (after a poll, and every minute from beat)."""
    from .services.messages.indexes import index_for_search

    return index_for_search()


@shared_task(name="connections.tasks.sweep_orphan_files", ignore_result=True)
def sweep_orphan_files() -> int:
    """Daily: remove mail files no row refers to (left by killed workers), older than a day."""
    from .services.inbound.orphans import sweep_orphan_files as sweep

    return sweep(remote_ok=True).removed  # remote storages have their own lifecycle rules


@shared_task(name="connections.tasks.prune_poll_history", ignore_result=True)
def prune_poll_history() -> int:
    """Delete poll history older than POLL_HISTORY_RETENTION_DAYS."""
    from .services.inbound import history

    return history.prune_history()


# --- outbound (outbox)


@shared_task(name="connections.tasks.dispatch_outbox", ignore_result=True)
def dispatch_outbox() -> int:
    """Beat: one query for the connections with due messages; one send task for each."""
    from .services.outbound.dispatch import dispatch_due, kick

    ids = dispatch_due()
    for connection_id in ids:
        kick(connection_id=connection_id)
    return len(ids)


@shared_task(name="connections.tasks.send_outbox", ignore_result=True)
def send_outbox(connection_id: int) -> str:
    """Send a connection's due messages (claims with SKIP LOCKED: safe to run twice)."""
    from .services.monitoring.metrics import sends_finished
    from .services.outbound.sending import send_due

    report = send_due(connection_id=connection_id)
    sends_finished(report=report)  # /metrics counters
    return str(report)


# --- monitoring (heartbeats, watchdog, alerts)


@shared_task(name="connections.tasks.watchdog_tick", ignore_result=True)
def watchdog_tick() -> bool:
    """Beat: a watchdog pass when one is due (workers and beat also run it on their own)."""
    from .services.monitoring import watchdog

    return watchdog.run_if_due()


@shared_task(name="connections.tasks.deliver_alert_webhook", bind=True, ignore_result=True,
             max_retries=8, acks_late=True)
def deliver_alert_webhook(self, delivery_id: int) -> bool:
    """Post one alert notification to its webhook; retried with backoff (10 s, 20 s, … 30 min)."""
    from .services.monitoring import notify

    try:
        return notify.deliver(delivery_id=delivery_id)
    except notify.WebhookError as exc:
        raise self.retry(exc=exc, countdown=min(10 * 2 ** self.request.retries, 1800))


# --- webhooks and retention


@shared_task(name="connections.tasks.deliver_webhook", ignore_result=True)
def deliver_webhook(webhook_id: int) -> int:
    """Deliver one webhook's due deliveries (one run per webhook at a time)."""
    from .services import webhooks

    return webhooks.run(webhook_id=webhook_id).attempted


@shared_task(name="connections.tasks.sweep_webhooks", ignore_result=True)
def sweep_webhooks() -> int:
    """Beat, every minute: start runs for webhooks with due work (lost kicks, retries)."""
    from .services import webhooks

    return webhooks.sweep()


@shared_task(name="connections.tasks.purge_messages", ignore_result=True)
def purge_messages() -> int:
    """Daily: apply every connection's keep_days / keep_sent_days."""
    from .services.messages import retention

    return retention.purge().messages
