"""The outbox state machine: claims, stale `sending`, requeue, cancel, dispatch."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from connections.models import OutboxMessage, OutboxStatus
from connections.services.outbound import actions, dispatch, enqueue, outcomes, sending
from connections.services.outbound.claims import claim


def _enqueue(conn, to="a@example.test", **kw):
    return enqueue.enqueue(connection_id=conn.pk, to=[to], subject="s", text="t", dispatch=False, **kw)


def _status(msg) -> str:
    return OutboxMessage.objects.values_list("status", flat=True).get(pk=msg.pk)


@pytest.mark.django_db
def test_claim_marks_sending_and_a_second_claim_gets_nothing(make_connection):
    conn = make_connection()
    msgs = [_enqueue(conn) for _ in range(3)]
    claimed = claim(conn, 10, None)
    assert sorted(c.id for c in claimed) == sorted(m.pk for m in msgs)
    assert {_status(m) for m in msgs} == {OutboxStatus.SENDING}
    assert all(OutboxMessage.objects.get(pk=m.pk).claimed_at for m in msgs)
    assert claim(conn, 10, None) == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_skip_locked_rows_and_never_share_a_message(make_connection):
    """Two claimers at once: the second skips the rows the first holds (SKIP LOCKED)."""
    conn = make_connection()
    msgs = [_enqueue(conn, f"m{i}@example.test") for i in range(6)]
    first_has_locked = threading.Event()
    release_first = threading.Event()
    results: dict[str, list[int]] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                rows = list(
                    OutboxMessage.objects.select_for_update(skip_locked=True)
                    .filter(pk__in=[m.pk for m in msgs[:3]]).values_list("pk", flat=True)
                )
                results["held"] = rows
                first_has_locked.set()
                release_first.wait(10)
        finally:
            db_connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_has_locked.wait(10)
    try:
        claimed = claim(conn, 10, None)  # does not wait for the first transaction
        results["second"] = [c.id for c in claimed]
    finally:
        release_first.set()
        thread.join(10)
    assert sorted(results["second"]) == sorted(m.pk for m in msgs[3:])
    assert not set(results["second"]) & set(results["held"])


@pytest.mark.django_db
def test_requeue_failed_cancelled_and_stale_sending_but_not_fresh_sending_or_sent(make_connection):
    conn = make_connection()
    failed, cancelled, stale, fresh, sent, queued = (_enqueue(conn) for _ in range(6))
    now = timezone.now()
    OutboxMessage.objects.filter(pk=failed.pk).update(status=OutboxStatus.FAILED, attempts=5, last_error="x")
    OutboxMessage.objects.filter(pk=cancelled.pk).update(status=OutboxStatus.CANCELLED)
    OutboxMessage.objects.filter(pk=stale.pk).update(status=OutboxStatus.SENDING, claimed_at=now - timedelta(hours=1))
    OutboxMessage.objects.filter(pk=fresh.pk).update(status=OutboxStatus.SENDING, claimed_at=now)
    OutboxMessage.objects.filter(pk=sent.pk).update(status=OutboxStatus.SENT, sent_at=now)
    result = actions.requeue(message_ids=[m.pk for m in (failed, cancelled, stale, fresh, sent, queued)])
    assert (result.changed, result.skipped) == (3, 3)
    for m in (failed, cancelled, stale):
        got = OutboxMessage.objects.get(pk=m.pk)
        assert got.status == OutboxStatus.QUEUED and got.attempts == 0 and got.claimed_at is None
        assert got.next_attempt_at <= timezone.now()
        assert got.delivery_log[-1]["outcome"] == "requeued"
    assert _status(fresh) == OutboxStatus.SENDING and _status(sent) == OutboxStatus.SENT


@pytest.mark.django_db
def test_cancel_queued_and_stale_sending_only(make_connection):
    conn = make_connection()
    queued, stale, fresh, failed = (_enqueue(conn) for _ in range(4))
    now = timezone.now()
    OutboxMessage.objects.filter(pk=stale.pk).update(status=OutboxStatus.SENDING, claimed_at=now - timedelta(hours=1))
    OutboxMessage.objects.filter(pk=fresh.pk).update(status=OutboxStatus.SENDING, claimed_at=now)
    OutboxMessage.objects.filter(pk=failed.pk).update(status=OutboxStatus.FAILED)
    result = actions.cancel(message_ids=[queued.pk, stale.pk, fresh.pk, failed.pk])
    assert (result.changed, result.skipped) == (2, 2)
    assert _status(queued) == _status(stale) == OutboxStatus.CANCELLED
    assert _status(fresh) == OutboxStatus.SENDING and _status(failed) == OutboxStatus.FAILED
    assert claim(conn, 10, None) == []  # cancelled is never sent


@pytest.mark.django_db
def test_requeue_and_cancel_respect_the_users_tenants(make_connection, tenant, django_user_model):
    from connections.models import Membership, Tenant

    conn = make_connection()
    other_tenant = Tenant.objects.create(name="Other", slug="other-t")
    other_conn = make_connection(tenant=other_tenant)
    mine, theirs = _enqueue(conn), _enqueue(other_conn)
    user = django_user_model.objects.create_user("op", password="x", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role="operator")
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    Membership.objects.create(user=viewer, tenant=tenant, role="viewer")
    assert actions.cancel(message_ids=[mine.pk, theirs.pk], user=viewer).changed == 0
    assert actions.cancel(message_ids=[mine.pk, theirs.pk], user=user).changed == 1
    assert _status(mine) == OutboxStatus.CANCELLED and _status(theirs) == OutboxStatus.QUEUED


@pytest.mark.django_db
def test_a_recording_after_an_operator_requeue_does_not_overwrite_it(make_connection):
    """A slow worker whose message was requeued as stale must not clobber the new state."""
    conn = make_connection()
    msg = _enqueue(conn)
    [claimed] = claim(conn, 1, None)
    OutboxMessage.objects.filter(pk=msg.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
    assert actions.requeue(message_ids=[msg.pk]).changed == 1
    outcomes.record_sent(claimed, ["a@example.test"], {})
    assert _status(msg) == OutboxStatus.QUEUED


@pytest.mark.django_db
def test_dispatch_due_one_query_finds_connections_with_due_messages(make_connection, django_assert_num_queries):
    due_conn, later_conn, busy_conn, disabled_conn, empty_conn = (make_connection() for _ in range(5))
    _enqueue(due_conn)
    _enqueue(later_conn, send_after=timezone.now() + timedelta(hours=1))
    _enqueue(busy_conn)
    busy = _enqueue(busy_conn)
    OutboxMessage.objects.filter(pk=busy.pk).update(status=OutboxStatus.SENDING, claimed_at=timezone.now(),
                                                    lease_until=timezone.now() + timedelta(seconds=60))
    _enqueue(disabled_conn)
    disabled_conn.enabled = False
    disabled_conn.save()
    with django_assert_num_queries(2):  # nothing to recover (one query), then the dispatch query
        ids = dispatch.dispatch_due()
    assert ids == [due_conn.pk]
    # a crashed worker's `sending` rows do not block the connection once its lease ran out:
    # they are back in the queue by themselves (their data never started)
    OutboxMessage.objects.filter(pk=busy.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert sorted(dispatch.dispatch_due()) == sorted([due_conn.pk, busy_conn.pk])
    assert OutboxMessage.objects.get(pk=busy.pk).status == OutboxStatus.QUEUED


@pytest.mark.django_db(transaction=True)  # send_due runs outside a transaction, as in a worker
def test_an_exception_mid_batch_releases_the_untried_messages(make_connection, fault, monkeypatch):
    """A bug or kill signal while sending: untried messages go back to queued, none is lost."""
    conn = make_connection(port=fault.port)
    msgs = [_enqueue(conn, f"m{i}@example.test") for i in range(3)]
    calls = {"n": 0}
    real = outcomes.record_sent

    def record_then_explode(item, accepted, refused, **kwargs):
        calls["n"] += 1
        outcome = real(item, accepted, refused, **kwargs)
        if calls["n"] == 1:
            raise KeyboardInterrupt  # e.g. the worker being told to stop
        return outcome

    monkeypatch.setattr(outcomes, "record_sent", record_then_explode)
    with pytest.raises(KeyboardInterrupt):
        sending.send_due(connection_id=conn.pk)
    statuses = sorted(_status(m) for m in msgs)
    assert statuses == [OutboxStatus.QUEUED, OutboxStatus.QUEUED, OutboxStatus.SENT]


@pytest.mark.smoke
@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_outcomes_are_written_by_the_writer_thread(make_connection, fault):
    """Workers and the CLI run outside a transaction: outcomes go through the writer thread,
    in order, each committed; every state lands as in the synchronous path."""
    conn = make_connection(port=fault.port)
    specs = ["ok1", "rcpt550-a", "data451-b", "ok2", "data552-c", "ok3"]
    msgs = [enqueue.enqueue(connection_id=conn.pk, to=[f"{s}@example.test", "ok@example.test"]
                           if s == "rcpt550-a" else [f"{s}@example.test"], subject=s, dispatch=False,
                           priority=100 - i)
            for i, s in enumerate(specs)]
    report = sending.send_due(connection_id=conn.pk)
    got = {m.subject: OutboxMessage.objects.get(pk=m.pk) for m in msgs}
    assert [o.status for o in report.outcomes] == ["sent", "sent", "retry", "sent", "failed", "sent"]
    assert got["ok1"].status == got["ok2"].status == got["ok3"].status == OutboxStatus.SENT
    assert got["rcpt550-a"].status == OutboxStatus.SENT
    assert got["rcpt550-a"].recipient_results["rcpt550-a@example.test"]["code"] == 550
    assert got["data451-b"].status == OutboxStatus.QUEUED and got["data451-b"].attempts == 1
    assert got["data552-c"].status == OutboxStatus.FAILED and "552" in got["data552-c"].last_error
    assert fault.sessions == 1


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_an_interruption_loses_nothing(make_connection, fault, monkeypatch):
    conn = make_connection(port=fault.port)
    msgs = [_enqueue(conn, f"m{i}@example.test") for i in range(4)]
    from connections.mail import smtp

    real_send = smtp.SMTPClient.send
    calls = {"n": 0}

    def send_then_stop(self, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the worker is told to stop before the third message
        return real_send(self, **kwargs)

    monkeypatch.setattr(smtp.SMTPClient, "send", send_then_stop)
    with pytest.raises(KeyboardInterrupt):
        sending.send_due(connection_id=conn.pk)
    statuses = sorted(_status(m) for m in msgs)
    assert statuses == [OutboxStatus.QUEUED, OutboxStatus.QUEUED, OutboxStatus.SENT, OutboxStatus.SENT]
    assert len(fault.accepted) == 2


@pytest.mark.django_db
def test_a_connection_with_messages_cannot_be_deleted_but_its_tenant_can(make_connection, tenant):
    from django.db.models import RestrictedError

    conn = make_connection()
    _enqueue(conn)
    with pytest.raises(RestrictedError):
        conn.delete()
    tenant.delete()
    assert not OutboxMessage.objects.exists()
