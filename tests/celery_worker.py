"""A real Celery worker for tests (pytest plugin, loaded by tests/conftest.py).

Fixture `tenantmail_worker` (session scope): starts one Celery worker of the app in
`tenantmail.celery`, in a thread of the test process, on the configured broker (Redis in
the main pass, the embedded filesystem broker in the smoke pass), consuming this run's
own queue (`CELERY_TASK_DEFAULT_QUEUE`, unique per run — see tests/settings.py). Tasks
run for real: serialized, sent through the broker, received and executed by the worker.

Use it from tests that commit, so that the worker (its own database connection) sees
the rows and `delay_on_commit` actually sends:

    @pytest.mark.django_db(transaction=True)
    def test_poll_task(tenantmail_worker):
        with transaction.atomic():
            conn = InboundConnection.objects.create(...)
            poll_connection.delay_on_commit(conn.pk)
        wait_until(lambda: PollRun.objects.filter(connection=conn).exists())

There is no result backend (TenantMail's tasks record outcomes in the database), so wait
for an effect with `wait_until(condition, timeout=...)` from this module. The worker uses
the solo pool: one task at a time, in order. Its log lines go to the `celery` loggers.
"""
from __future__ import annotations

import time
from typing import Callable, Iterator

import pytest

WORKER_HOSTNAME = "tenantmail-tests@localhost"


def wait_until(condition: Callable[[], object], *, timeout: float = 20.0, interval: float = 0.05,
               message: str = "condition") -> object:
    """Call `condition` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def tenantmail_worker(django_db_setup, django_db_blocker) -> Iterator[object]:
    """A running Celery worker (celery.worker.WorkController) on this run's queue."""
    from celery.contrib.testing.worker import start_worker
    from django.db import connections

    from tenantmail.celery import app

    worker_context = start_worker(
        app,
        pool="solo",
        concurrency=1,
        perform_ping_check=False,  # needs a result backend; start_worker waits for readiness anyway
        loglevel="INFO",
        shutdown_timeout=30,
        hostname=WORKER_HOSTNAME,
    )
    # Celery's Django fixup closes this thread's connection at worker start: allow that.
    # Afterwards the DB blocker (process-wide) applies to tasks too: they may use the
    # database while a test with database access runs.
    with django_db_blocker.unblock():
        worker = worker_context.__enter__()
    try:
        yield worker
    finally:
        worker_context.__exit__(None, None, None)
        # The fixup closes the worker's connection after each task; close ours so that
        # the test database can be dropped.
        with django_db_blocker.unblock():
            connections.close_all()
