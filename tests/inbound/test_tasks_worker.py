"""Beat's dispatch task and the poll task, through the broker and a real Celery worker."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from connections.models import PollOutcome, PollRun, StoredMessage
from connections.tasks import dispatch_due_polls, poll_connection
from tests.celery_worker import wait_until

from .mails import make_mail

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]


def test_dispatch_enqueues_due_polls_and_the_worker_polls(tenantmail_worker, mail_servers, mailbox, make_inbound):
    address, password = mailbox
    mail_servers.append(address, [make_mail(f"w{i}") for i in range(3)])
    due = make_inbound(address, password, post_processing="mark_read", next_poll_at=timezone.now() - timedelta(seconds=1))
    later = make_inbound(address, password, folder="Other", next_poll_at=timezone.now() + timedelta(hours=1))
    dispatch_due_polls.delay()
    wait_until(lambda: PollRun.objects.filter(connection=due).exclude(outcome=PollOutcome.RUNNING).exists(),
               timeout=30, message="the dispatched poll to finish")
    run = PollRun.objects.get(connection=due)
    assert run.outcome == PollOutcome.SUCCESS, run.error
    assert run.trigger == "schedule"
    assert StoredMessage.objects.filter(connection=due).count() == 3
    # The poll queued the body search indexing of what it stored; the worker did it.
    wait_until(lambda: not StoredMessage.objects.filter(connection=due, search_indexed=False).exists(),
               timeout=30, message="the stored mails to be indexed for search")
    assert not PollRun.objects.filter(connection=later).exists()
    due.refresh_from_db()
    assert due.next_poll_at > timezone.now()  # the poll set the next run from the schedule


def test_poll_now_task_on_commit(tenantmail_worker, mail_servers, mailbox, make_inbound):
    address, password = mailbox
    mail_servers.append(address, [make_mail("now")])
    conn = make_inbound(address, password)
    with transaction.atomic():
        poll_connection.delay_on_commit(conn.pk, "manual")
    wait_until(lambda: PollRun.objects.filter(connection=conn, outcome=PollOutcome.SUCCESS).exists(),
               timeout=30, message="the manual poll")
    assert PollRun.objects.get(connection=conn).trigger == "manual"
    assert StoredMessage.objects.get(connection=conn).subject == "now"


def test_dispatch_fans_out_in_chunks(tenantmail_worker, mail_servers, make_inbound, settings):
    settings.POLL_DISPATCH_FANOUT = 1  # every batch goes through a fan_out_polls task
    settings.POLL_TASK_BATCH = 2  # three connections: a batch of two and a batch of one
    conns = []
    for i in range(3):
        address, password = mail_servers.add_user()
        mail_servers.append(address, [make_mail(f"fan {i}")])
        conns.append(make_inbound(address, password, next_poll_at=timezone.now() - timedelta(seconds=1)))
    assert dispatch_due_polls.run() == 3
    wait_until(lambda: StoredMessage.objects.filter(connection__in=conns).count() == 3, timeout=60,
               message="three fanned-out polls")
    # The mails are committed before the poll closes its history row: wait for that too.
    wait_until(lambda: not PollRun.objects.filter(connection__in=conns, outcome=PollOutcome.RUNNING).exists(),
               timeout=30, message="the polls to finish")
    for conn in conns:
        assert PollRun.objects.get(connection=conn).outcome == PollOutcome.SUCCESS
