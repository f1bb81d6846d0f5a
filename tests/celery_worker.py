"""A real Celery worker for tests (pytest plugin, loaded by tests/conftest.py).

Fixture `tenantmail_worker`: one Celery worker (started once per session) of the app in
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
for an effect with `wait_until(condition, timeout=...)` from this module. After each test
the fixture waits until the worker is idle, so no task of one test runs on into the next.
The worker uses the solo pool: one task at a time, in order. Its log lines go to the
`celery` loggers.
"""
from __future__ import annotations

import time
import warnings
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


@pytest.fixture
def tenantmail_worker(_session_worker) -> Iterator[object]:
    """A running Celery worker (celery.worker.WorkController) on this run's queue.

    The worker lives for the whole session; each test's use of it ends only once it is idle
    (see `wait_until_idle`): a task the test set off must not run on after the test, when its
    database is flushed or access to it is blocked."""
    yield _session_worker
    if not wait_until_idle(_session_worker):
        warnings.warn("the Celery worker was still busy 30 s after the test ended", stacklevel=1)


def wait_until_idle(worker, *, timeout: float = 30.0) -> bool:
    """Until the worker runs no task, holds none it received that is due now, and its queues
    are empty — twice in a row, 50 ms apart, as one task may publish the next on commit.
    Tasks set for later (ETA, retry countdown) are left alone. False after `timeout`."""
    from celery.worker import state

    names = [queue.name for queue in worker.consumer.task_consumer.queues]
    deadline, quiet = time.monotonic() + timeout, 0
    with worker.app.connection_for_read() as connection:
        channel = connection.default_channel
        while time.monotonic() < deadline:
            busy = bool(state.active_requests) or any(not request.eta for request in state.reserved_requests)
            busy = busy or any(_waiting(channel, name) for name in names)
            quiet = 0 if busy else quiet + 1
            if quiet == 2:
                return True
            time.sleep(0.05)
    return False


def _waiting(channel, queue: str) -> int:
    """Messages waiting in a queue of the broker (Redis holds no key for an empty one)."""
    from kombu.exceptions import ChannelError

    try:
        return channel.queue_declare(queue, passive=True).message_count
    except ChannelError:
        return 0


@pytest.fixture(scope="session")
def _session_worker(django_db_setup, django_db_blocker) -> Iterator[object]:
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
