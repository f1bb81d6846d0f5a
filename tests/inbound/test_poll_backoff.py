"""A poll's outcome on the connection: a locked mailbox is retried soon without back-off, an
unreachable server backs off up to an hour, and no poll runs inside a transaction."""
from __future__ import annotations

import socket
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import InboundConnection, PollOutcome, PollRun, ScheduleKind
from connections.services.inbound import locks
from connections.services.inbound.dispatch import claim_due
from connections.services.inbound.poll import poll


@pytest.fixture
def listening_port():
    """A port something listens on (a locked poll must not learn first that the server is down)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.django_db(transaction=True)
def test_locked_outcome_does_not_back_off(tenant, make_credential, listening_port):
    conn = InboundConnection.objects.create(tenant=tenant, name="lk", host="127.0.0.1", protection="ssl_tls",
                                            port=listening_port, timeout=2,
                                            credential_name=make_credential("lk@example.test"))
    key = locks.mailbox_key(host="127.0.0.1", username="lk@example.test", folder="INBOX")
    token = locks.acquire(key=key, timeout_seconds=60)
    try:
        result = poll(connection_id=conn.pk)
    finally:
        locks.release(key=key, token=token)
    assert result.outcome == PollOutcome.LOCKED and "Another poll" in result.error
    conn.refresh_from_db()
    assert conn.consecutive_failures == 0 and conn.next_poll_at is not None
    assert PollRun.objects.get(pk=result.poll_run_id).outcome == PollOutcome.LOCKED


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fields,delay", [
    ({"schedule_every": 300}, 30),  # retried after 30 s, not after the 5-minute interval
    ({"schedule_every": 15}, 15),  # a shorter interval: after the interval
    ({"schedule_kind": ScheduleKind.CRON, "schedule_cron": "0 * * * *"}, 30),  # hourly cron: 30 s
])
def test_locked_poll_is_retried_soon_with_jitter(tenant, make_credential, fields, delay, listening_port):
    """Two connections of one mailbox on aligned schedules must not keep colliding: the
    skipped one comes back after min(interval, 30 s) plus a little jitter."""
    user = f"lr-{uuid.uuid4().hex[:6]}@example.test"
    conn = InboundConnection.objects.create(tenant=tenant, name="lr", host="127.0.0.1", protection="ssl_tls",
                                            port=listening_port, timeout=2, credential_name=make_credential(user),
                                            **fields)
    key = locks.mailbox_key(host="127.0.0.1", username=user, folder="INBOX")
    token = locks.acquire(key=key, timeout_seconds=600)
    retries = []
    try:
        for _ in range(8):
            result = poll(connection_id=conn.pk)
            assert result.outcome == PollOutcome.LOCKED
            conn.refresh_from_db()
            finished = PollRun.objects.get(pk=result.poll_run_id).finished_at
            gap = (conn.next_poll_at - finished).total_seconds()
            assert delay - 0.5 <= gap <= delay * 1.2 + 0.5, gap
            retries.append(gap)
    finally:
        locks.release(key=key, token=token)
    assert len({round(r, 2) for r in retries}) > 1, "no jitter: skipped pollers would come back in step"
    assert conn.last_poll_at is None  # a skipped poll changes nothing but the next run


@pytest.mark.django_db(transaction=True)
def test_unreachable_server_fails_and_backs_off_up_to_an_hour(tenant, make_credential):
    conn = InboundConnection.objects.create(tenant=tenant, name="down", host="127.0.0.1", port=1,
                                            protection="ssl_tls", timeout=2, credential_name=make_credential())
    for expected in (1, 2, 4, 8):
        result = poll(connection_id=conn.pk)
        assert result.outcome == PollOutcome.FAILED and result.error
        conn.refresh_from_db()
        assert round((conn.backoff_until - conn.last_poll_at).total_seconds() / 60) == expected
    InboundConnection.objects.filter(pk=conn.pk).update(consecutive_failures=12)
    conn.refresh_from_db()
    poll(connection_id=conn.pk)
    conn.refresh_from_db()
    assert round((conn.backoff_until - conn.last_poll_at).total_seconds() / 60) == 60
    assert PollRun.objects.filter(connection=conn, outcome=PollOutcome.FAILED).count() == 5
    # In backoff: not dispatched even though next_poll_at is due.
    InboundConnection.objects.filter(pk=conn.pk).update(next_poll_at=timezone.now() - timedelta(seconds=1))
    assert conn.pk not in claim_due()


@pytest.mark.django_db(transaction=True)
def test_poll_refuses_to_run_inside_a_transaction(tenant, make_credential):
    from django.db import transaction

    from connections.errors import TenantMailError

    conn = InboundConnection.objects.create(tenant=tenant, name="tx", host="127.0.0.1", port=1,
                                            credential_name=make_credential())
    with pytest.raises(TenantMailError, match="inside a database transaction"):
        with transaction.atomic():
            poll(connection_id=conn.pk)
    assert not PollRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_locked_poll_sends_the_server_nothing(tenant, make_credential):
    """The socket is opened while the lock is taken (opener.HeadStart); a poll that does not
    get the lock closes it without a byte sent — not even a login."""
    from tests.mail.fakeserver import ScriptedServer

    seen: list[bytes] = []

    def handler(conn):
        conn.send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake ready\r\n")
        try:
            seen.append(conn.readline())
        except ConnectionResetError:  # closed with the greeting unread
            seen.append(b"")

    server = ScriptedServer(handler)
    try:
        conn = InboundConnection.objects.create(tenant=tenant, name="lk2", host=server.host, port=server.port,
                                                protection="off", allow_plain_without_tls=True,
                                                credential_name=make_credential("lk2@example.test"))
        key = locks.mailbox_key(host=server.host, username="lk2@example.test", folder="INBOX")
        token = locks.acquire(key=key, timeout_seconds=60)
        try:
            assert poll(connection_id=conn.pk).outcome == PollOutcome.LOCKED
        finally:
            locks.release(key=key, token=token)
        deadline = timezone.now() + timedelta(seconds=2)
        while not seen and timezone.now() < deadline:  # (a connect not yet started is cancelled: no EOF to see)
            time.sleep(0.01)
        assert seen in ([], [b""]) and server.data == b""
        # Unlocked, the same connection logs in: the server did answer.
        poll(connection_id=conn.pk)
        assert server.data.upper().split(b" ")[1:2] in ([b"LOGIN"], [b"AUTHENTICATE"])
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_a_refused_connection_costs_one_statement_of_bookkeeping(tenant, make_credential):
    """A server that refuses the connection is known before the lock is taken (when the
    background connect has ended by then: nearly always on loopback): the poll writes its failed
    history row whole, in its one closing statement — no lock, no RUNNING row."""
    from django.db import connection as db
    from django.test.utils import CaptureQueriesContext

    from connections.models import MailboxLock

    conn = InboundConnection.objects.create(tenant=tenant, name="refused", host="127.0.0.1", port=1,
                                            protection="ssl_tls", timeout=2, credential_name=make_credential())
    poll(connection_id=conn.pk)  # warm-up (statements prepared, modules imported)
    lockless = 0
    for _ in range(20):
        with CaptureQueriesContext(db) as queries:
            result = poll(connection_id=conn.pk)
        assert result.outcome == PollOutcome.FAILED and "refused" in result.error
        run = PollRun.objects.get(pk=result.poll_run_id)
        assert run.outcome == PollOutcome.FAILED and run.finished_at >= run.started_at and "refused" in run.error
        statements = [q["sql"] for q in queries.captured_queries]
        if len(statements) == 2:  # the connection with its credential; the closing statement
            assert not any("mailboxlock" in sql.lower() for sql in statements), statements
            lockless += 1
    assert lockless >= 10, f"only {lockless} of 20 refused polls skipped the lock"
    assert not MailboxLock.objects.exists()
