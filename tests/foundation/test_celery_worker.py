"""Celery for real: tasks go through the broker to a worker, and only after the commit."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from celery import shared_task
from django.conf import settings
from django.db import transaction

from connections.models import Tenant
from tenantmail.celery import app
from tests.celery_worker import wait_until, wait_until_idle

# Filled by the probe task in the worker's thread (same process): token -> what it saw.
SEEN: dict[str, dict] = {}


@shared_task(name="tests.foundation.probe", bind=True, ignore_result=True)
def probe(self, token: str, tenant_id: int | None = None, pause: float = 0.0) -> None:
    """Record where it ran and what it found in the database (after `pause` seconds)."""
    time.sleep(pause)
    found = None
    if tenant_id is not None:
        found = Tenant.objects.filter(pk=tenant_id).values_list("name", flat=True).first()
    SEEN[token] = {
        "thread": threading.current_thread().name,
        "delivery_info": dict(self.request.delivery_info or {}),
        "eager": self.request.is_eager,
        "found": found,
    }


@pytest.mark.smoke
@pytest.mark.django_db(transaction=True)
def test_delay_on_commit_runs_on_the_worker_after_commit(tenantmail_worker):
    token = uuid.uuid4().hex
    with transaction.atomic():
        tenant = Tenant.objects.create(name="Committed first", slug=f"t-{token[:8]}")
        probe.delay_on_commit(token, tenant.pk)
        # Not sent before the commit: had it been, the worker (its own connection)
        # could not have seen the row.
        assert token not in SEEN
    seen = wait_until(lambda: SEEN.get(token), message="the probe task on the worker")
    assert seen["found"] == "Committed first"
    assert seen["eager"] is False
    assert seen["thread"] != threading.main_thread().name
    assert seen["delivery_info"]["routing_key"] == settings.CELERY_TASK_DEFAULT_QUEUE


@pytest.mark.django_db(transaction=True)
def test_rolled_back_transaction_sends_nothing(tenantmail_worker):
    lost, marker = uuid.uuid4().hex, uuid.uuid4().hex
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            probe.delay_on_commit(lost)
            raise RuntimeError("roll back")
    # One worker, solo pool, one queue: once a later task ran, an earlier one would have.
    with transaction.atomic():
        probe.delay_on_commit(marker)
    wait_until(lambda: marker in SEEN, message="the marker task")
    assert lost not in SEEN


def test_worker_consumes_this_runs_own_queue(tenantmail_worker):
    queues = {q.name for q in tenantmail_worker.consumer.task_consumer.queues}
    assert queues == {settings.CELERY_TASK_DEFAULT_QUEUE, *settings.TENANTMAIL_QUEUES.values()}
    assert all(q.startswith(settings.CELERY_TASK_DEFAULT_QUEUE) for q in queues)
    assert settings.CELERY_TASK_DEFAULT_QUEUE.startswith("tenantmail-test-")
    assert app.conf.task_always_eager is False
    assert "connections.tasks.dispatch_due_polls" in app.tasks


@pytest.mark.smoke
def test_each_kind_of_work_has_its_own_queue():
    """Beat's dispatch never queues behind polls, sends or indexing (issue 21)."""
    queues = settings.TENANTMAIL_QUEUES

    def queue_of(task: str) -> str:
        return app.amqp.router.route({}, f"connections.tasks.{task}")["queue"].name

    assert queue_of("dispatch_due_polls") == queue_of("dispatch_outbox") == queue_of("fan_out_polls") == queues["dispatch"]
    assert queue_of("poll_connection") == queue_of("poll_connections") == queues["poll"]
    assert queue_of("send_outbox") == queues["send"]
    assert queue_of("index_messages_for_search") == queues["index"]
    assert queue_of("prune_poll_history") == queue_of("sweep_orphan_files") == queues["housekeeping"]
    assert queue_of("no_such_task") == settings.CELERY_TASK_DEFAULT_QUEUE
    # Every task of the app is routed somewhere a worker started without -Q consumes.
    consumed = {q.name for q in app.amqp.queues.consume_from.values()} if app.amqp.queues.consume_from else set(app.amqp.queues)
    for name in app.tasks:
        if name.startswith("connections."):
            assert queue_of(name.split(".")[-1]) in consumed


@pytest.mark.smoke
def test_the_fixture_waits_until_the_worker_is_idle(tenantmail_worker):
    """What each test's teardown waits for: no task of a test runs on into the next one (whose
    database is flushed or blocked), neither the running one nor one still in the queue."""
    running, queued = uuid.uuid4().hex, uuid.uuid4().hex
    probe.delay(running, pause=0.5)
    probe.delay(queued)
    assert wait_until_idle(tenantmail_worker, timeout=20)
    assert running in SEEN and queued in SEEN
