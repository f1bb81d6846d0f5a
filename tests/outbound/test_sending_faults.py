"""Sending against the fault-injecting server: every failure lands in the right state."""
from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from django.test import override_settings
from django.utils import timezone

from connections.errors import ValidationError
from connections.models import OutboxMessage, OutboxStatus
from connections.services.outbound import actions, enqueue, sending
from connections.services.outbound.mime import AttachmentIn

from .faultserver import CutDataServer, SilentListener, closed_port

pytestmark = pytest.mark.django_db(transaction=True)  # send_due runs outside a transaction, as in a worker


def _enqueue(conn, to, **kw):
    kw.setdefault("subject", "fault test")
    kw.setdefault("text", "body\n")
    return enqueue.enqueue(connection_id=conn.pk, to=to if isinstance(to, list) else [to], dispatch=False, **kw)


def _get(msg) -> OutboxMessage:
    return OutboxMessage.objects.get(pk=msg.pk)


@pytest.mark.smoke
def test_accepted_message_is_sent_with_per_recipient_results_and_exact_bytes(fault_connection, fault):
    msg = _enqueue(fault_connection, ["a@example.test", "b@example.test"])
    report = sending.send_due(connection_id=fault_connection.pk)
    assert report.sent == 1 and report.sessions == 1
    got = _get(msg)
    assert got.status == OutboxStatus.SENT
    assert got.sent_at is not None and got.attempts == 1 and got.last_error == ""
    # What the server said, per recipient: its RCPT TO reply, the final reply and the queue id.
    assert got.recipient_results == {
        r: {"status": "accepted", "rcpt_code": 250, "rcpt_text": "2.1.5 OK", "code": 250,
            "text": "2.0.0 Ok: queued as FAULT1", "queue_id": "FAULT1"}
        for r in ("a@example.test", "b@example.test")}
    assert [e["outcome"] for e in got.delivery_log] == ["sent"]
    assert got.delivery_log[0]["code"] == 250 and got.delivery_log[0]["queue_id"] == "FAULT1"
    assert len(fault.accepted) == 1
    received = fault.accepted[0]
    assert received.mail_from == "support@example.test"
    assert received.rcpt_tos == ["a@example.test", "b@example.test"]
    assert received.data == bytes(got.mime)  # byte for byte (dot-stuffing undone by the server)


def test_partial_refusal_550_and_452_is_sent_and_records_each_refusal(fault_connection, fault):
    msg = _enqueue(fault_connection, ["ok@example.test", "rcpt550-x@example.test", "rcpt452-y@example.test"])
    sending.send_due(connection_id=fault_connection.pk)
    got = _get(msg)
    assert got.status == OutboxStatus.SENT
    assert got.recipient_results["ok@example.test"]["status"] == "accepted"
    r550 = got.recipient_results["rcpt550-x@example.test"]
    assert r550["status"] == "refused" and r550["code"] == 550 and "User unknown" in r550["text"]
    r452 = got.recipient_results["rcpt452-y@example.test"]
    assert r452["status"] == "refused" and r452["code"] == 452 and "Too many recipients" in r452["text"]
    assert "refused" in got.last_error and got.delivery_log[-1]["outcome"] == "partial"
    assert fault.accepted[0].rcpt_tos == ["ok@example.test"]


def test_every_recipient_refused_permanently_fails_at_once_with_the_reply(fault_connection, fault):
    msg = _enqueue(fault_connection, ["rcpt550-a@example.test", "rcpt550-b@example.test"])
    sending.send_due(connection_id=fault_connection.pk)
    got = _get(msg)
    assert got.status == OutboxStatus.FAILED and got.attempts == 1
    assert "550" in got.last_error and "User unknown" in got.last_error
    assert got.recipient_results["rcpt550-a@example.test"]["code"] == 550
    assert not fault.received


def test_every_recipient_refused_temporarily_is_retried_with_backoff(fault_connection, fault):
    msg = _enqueue(fault_connection, ["rcpt452-a@example.test", "rcpt451-b@example.test"])
    before = timezone.now()
    sending.send_due(connection_id=fault_connection.pk)
    got = _get(msg)
    assert got.status == OutboxStatus.QUEUED and got.attempts == 1
    assert got.next_attempt_at >= before + timedelta(seconds=59)
    assert "452" in got.last_error
    assert got.delivery_log[-1]["outcome"] == "retry"


@pytest.mark.parametrize("fault_name,code,text", [
    ("data550", 550, "rejected as spam"),
    ("data552", 552, "too big"),
])
def test_permanent_data_reply_fails_at_once(fault_connection, fault, fault_name, code, text):
    msg = _enqueue(fault_connection, [f"{fault_name}-x@example.test"])
    sending.send_due(connection_id=fault_connection.pk)
    got = _get(msg)
    assert got.status == OutboxStatus.FAILED and got.attempts == 1
    assert str(code) in got.last_error and text in got.last_error
    assert got.delivery_log[-1] == {**got.delivery_log[-1], "outcome": "failed", "code": code}


def test_451_at_data_is_retried_and_the_session_goes_on(fault_connection, fault):
    first = _enqueue(fault_connection, ["data451-x@example.test"], priority=5)
    second = _enqueue(fault_connection, ["fine@example.test"])
    report = sending.send_due(connection_id=fault_connection.pk)
    assert report.sessions == 1 and fault.sessions == 1
    assert _get(first).status == OutboxStatus.QUEUED and _get(first).attempts == 1
    assert "451" in _get(first).last_error
    assert _get(second).status == OutboxStatus.SENT


@pytest.mark.smoke
def test_421_mid_session_retries_that_message_and_releases_the_rest(fault_connection, fault):
    first = _enqueue(fault_connection, ["ok1@example.test"], priority=9)
    closing = _enqueue(fault_connection, ["data421-x@example.test"], priority=8)
    untried = _enqueue(fault_connection, ["ok2@example.test"], priority=7)
    report = sending.send_due(connection_id=fault_connection.pk)
    assert _get(first).status == OutboxStatus.SENT
    got = _get(closing)
    assert got.status == OutboxStatus.QUEUED and got.attempts == 1 and "421" in got.last_error
    rest = _get(untried)
    # not tried: back to queued without an attempt counted, a little later
    assert rest.status == OutboxStatus.QUEUED and rest.attempts == 0
    assert rest.next_attempt_at > timezone.now()
    assert "421" in report.error


def test_421_at_rcpt_is_transient(fault_connection, fault):
    msg = _enqueue(fault_connection, ["rcpt421-x@example.test"])
    sending.send_due(connection_id=fault_connection.pk)
    got = _get(msg)
    assert got.status == OutboxStatus.QUEUED and got.attempts == 1 and "421" in got.last_error


@pytest.mark.smoke
def test_connection_dropped_after_the_data_before_the_reply_is_uncertain(fault_connection, fault):
    msg = _enqueue(fault_connection, ["drop-x@example.test"])
    report = sending.send_due(connection_id=fault_connection.pk)
    got = _get(msg)
    assert got.status == OutboxStatus.UNCERTAIN and got.attempts == 1 and report.count("uncertain") == 1
    assert "(after the data, before the reply: may have been delivered)" in got.last_error
    assert got.delivery_log[-1]["outcome"] == "uncertain"
    assert len(fault.received) == 1  # the server did get the data
    assert sending.send_due(connection_id=fault_connection.pk).sessions == 0  # not sent again by itself
    # The operator's choice: resend (same bytes, same Message-ID) …
    assert actions.resend_uncertain(message_ids=[msg.pk]) == 1
    assert _get(msg).status == OutboxStatus.QUEUED


def test_an_uncertain_message_can_be_marked_sent(fault_connection, fault):
    msg = _enqueue(fault_connection, ["drop-x@example.test"])
    sending.send_due(connection_id=fault_connection.pk)
    assert actions.mark_sent(message_ids=[msg.pk]) == 1
    got = _get(msg)
    assert got.status == OutboxStatus.SENT and got.sent_at and got.delivery_log[-1]["outcome"] == "marked sent"
    assert actions.mark_sent(message_ids=[msg.pk]) == 0  # only uncertain ones


def test_a_connection_that_resends_uncertain_messages_queues_them_again(make_connection, fault):
    conn = make_connection(port=fault.port, timeout=2, resend_uncertain=True)
    msg = _enqueue(conn, ["drop-x@example.test"])
    report = sending.send_due(connection_id=conn.pk)
    got = _get(msg)
    assert got.status == OutboxStatus.QUEUED and got.attempts == 1 and report.count("retry") == 1
    assert "may have been delivered" in got.last_error and "sent again" in got.delivery_log[-1]["detail"]


def test_connection_cut_in_the_middle_of_data_is_not_delivered_and_retried(make_connection):
    cut = CutDataServer(after=2048)
    try:
        conn = make_connection(port=cut.port, timeout=5)
        msg = _enqueue(conn, ["a@example.test"], text="x" * 70 + "\n" * 1 + ("y" * 70 + "\n") * 130)  # ~9 KB
        assert _get(msg).size > 9000
        sending.send_due(connection_id=conn.pk)
    finally:
        cut.stop()
    got = _get(msg)
    assert len(cut.got[0]) == 2048
    assert got.status == OutboxStatus.QUEUED and got.attempts == 1
    assert "(closed during DATA: the message was incomplete and not delivered)" in got.last_error
    assert got.delivery_log[-1]["outcome"] == "retry"


def test_server_too_slow_to_answer_times_out_and_is_uncertain(fault_connection, fault):
    msg = _enqueue(fault_connection, ["slow-x@example.test"])
    started = timezone.now()
    sending.send_due(connection_id=fault_connection.pk)
    assert (timezone.now() - started).total_seconds() < fault.slow_seconds + 2
    got = _get(msg)
    assert got.status == OutboxStatus.UNCERTAIN and got.attempts == 1
    # smtplib reports a read timeout as a disconnect; the operator must read that the server
    # did not answer in time (not that it hung up), and that the data had been sent
    assert f"no answer from 127.0.0.1:{fault.port} within 2 s while sending" in got.last_error
    assert "after the data, before the reply: may have been delivered" in got.last_error
    assert got.delivery_log[-1]["outcome"] == "uncertain"


def test_silent_server_greeting_timeout_counts_an_attempt(make_connection):
    silent = SilentListener()
    try:
        conn = make_connection(port=silent.port, timeout=1)
        msg = _enqueue(conn, ["a@example.test"])
        report = sending.send_due(connection_id=conn.pk)
    finally:
        silent.stop()
    got = _get(msg)
    assert got.status == OutboxStatus.QUEUED and got.attempts == 1
    assert f"no answer from 127.0.0.1:{silent.port} within 1 s while reading the greeting" in got.last_error
    assert report.error


def test_connection_refused_retries_then_fails_after_max_attempts(make_connection):
    conn = make_connection(port=closed_port())
    msg = _enqueue(conn, ["a@example.test"])
    with override_settings(OUTBOX_MAX_ATTEMPTS=3, OUTBOX_RETRY_BASE_SECONDS=10):
        delays = []
        for attempt in (1, 2, 3):
            OutboxMessage.objects.filter(pk=msg.pk).update(next_attempt_at=timezone.now())
            before = timezone.now()
            sending.send_due(connection_id=conn.pk)
            got = _get(msg)
            assert got.attempts == attempt
            if attempt < 3:
                assert got.status == OutboxStatus.QUEUED and "refused" in got.last_error
                delays.append((got.next_attempt_at - before).total_seconds())
    assert 9 <= delays[0] <= 12 and 19 <= delays[1] <= 22  # exponential
    assert got.status == OutboxStatus.FAILED
    assert got.last_error.startswith("gave up after 3 attempts") and "refused" in got.last_error
    assert [e["outcome"] for e in got.delivery_log] == ["retry", "retry", "failed"]


def test_not_due_messages_are_not_sent(fault_connection, fault):
    later = _enqueue(fault_connection, ["a@example.test"], send_after=timezone.now() + timedelta(hours=1))
    assert sending.send_due(connection_id=fault_connection.pk).sessions == 0
    assert _get(later).status == OutboxStatus.QUEUED and not fault.received


def test_size_from_ehlo_is_remembered_and_then_checked_at_enqueue(make_connection, fault_server):
    from .faultserver import FaultServer

    small = FaultServer(size_limit=20_000).start()
    try:
        conn = make_connection(port=small.port)
        assert conn.smtp_max_size is None
        _enqueue(conn, ["a@example.test"])
        sending.send_due(connection_id=conn.pk)
        conn.refresh_from_db()
        assert conn.smtp_max_size == 20_000 and conn.smtp_max_size_seen_at is not None
        with pytest.raises(ValidationError, match="SIZE 20000"):
            _enqueue(conn, ["a@example.test"], attachments=[AttachmentIn("x.bin", b"x" * 30_000)])
        # A message queued before the limit was known is failed without sending its data.
        conn.smtp_max_size = None
        conn.save()
        big = _enqueue(conn, ["a@example.test"], attachments=[AttachmentIn("x.bin", b"x" * 30_000)])
        small.reset()
        sending.send_due(connection_id=conn.pk)
        got = _get(big)
        assert got.status == OutboxStatus.FAILED and "SIZE 20000" in got.last_error
        assert not small.received
    finally:
        small.stop()


def test_one_session_per_max_per_session_messages(make_connection, fault):
    conn = make_connection(port=fault.port, max_per_session=3)
    msgs = [_enqueue(conn, [f"m{i}@example.test"]) for i in range(7)]
    report = sending.send_due(connection_id=conn.pk)
    assert report.sent == 7 and report.sessions == 3 and fault.sessions == 3
    assert all(_get(m).status == OutboxStatus.SENT for m in msgs)


def test_priority_then_age_order(fault_connection, fault):
    low = _enqueue(fault_connection, ["low@example.test"], priority=-1)
    normal = _enqueue(fault_connection, ["normal@example.test"])
    high = _enqueue(fault_connection, ["high@example.test"], priority=10)
    sending.send_due(connection_id=fault_connection.pk)
    order = [r.rcpt_tos[0].split("@")[0] for r in fault.accepted]
    assert order == ["high", "normal", "low"]
    assert {_get(m).status for m in (low, normal, high)} == {OutboxStatus.SENT}


def test_rate_limit_per_minute(make_connection, fault):
    conn = make_connection(port=fault.port, rate_limit_per_minute=4)
    msgs = [_enqueue(conn, [f"r{i}@example.test"]) for i in range(6)]
    sending.send_due(connection_id=conn.pk)
    statuses = [_get(m).status for m in msgs]
    assert statuses.count(OutboxStatus.SENT) == 4 and statuses.count(OutboxStatus.QUEUED) == 2
    assert sending.send_due(connection_id=conn.pk).sessions == 0  # the minute's budget is spent
    # a minute later the rest goes
    OutboxMessage.objects.filter(connection=conn).update(claimed_at=timezone.now() - timedelta(minutes=2))
    sending.send_due(connection_id=conn.pk)
    assert all(_get(m).status == OutboxStatus.SENT for m in msgs)


def test_authentication_problem_holds_messages_without_counting_attempts(make_connection, fault):
    conn = make_connection(port=fault.port, authentication="plain", credential_name="missing-cred")
    msg = _enqueue(conn, ["a@example.test"])
    report = sending.send_due(connection_id=conn.pk)
    got = _get(msg)
    assert got.status == OutboxStatus.QUEUED and got.attempts == 0
    assert "missing-cred" in got.last_error and report.error
    assert got.next_attempt_at > timezone.now() + timedelta(minutes=4)
    assert got.delivery_log[-1]["outcome"] == "held"
    assert not fault.received


def test_disabled_connection_sends_nothing(make_connection, fault):
    conn = make_connection(port=fault.port, enabled=False)
    msg = _enqueue(conn, ["a@example.test"])
    report = sending.send_due(connection_id=conn.pk)
    assert "disabled" in report.error and _get(msg).status == OutboxStatus.QUEUED


def test_message_sent_is_parseable_by_the_receiver(fault_connection, fault):
    _enqueue(fault_connection, ["a@example.test"], subject="Ünïcödé", html="<p>x</p>",
             attachments=[AttachmentIn("ä.bin", b"\x00\xff" * 100)])
    sending.send_due(connection_id=fault_connection.pk)
    parsed = message_from_bytes(fault.accepted[0].data, policy=policy.default)
    assert parsed["Subject"] == "Ünïcödé"
    att = next(parsed.iter_attachments())
    assert att.get_filename() == "ä.bin" and att.get_content() == b"\x00\xff" * 100


def test_temporarily_refused_recipients_get_a_follow_up_message(fault_connection, fault):
    msg = _enqueue(fault_connection, ["ok@example.test", "rcpt452-later@example.test", "rcpt550-never@example.test"])
    sending.send_due(connection_id=fault_connection.pk)
    got = _get(msg)
    assert got.status == OutboxStatus.SENT
    assert "tried again in a follow-up message" in got.last_error
    [follow] = OutboxMessage.objects.filter(retry_of=msg)
    assert follow.status == OutboxStatus.QUEUED and follow.attempts == 1
    assert follow.envelope_to == ["rcpt452-later@example.test"]  # not the accepted, not the 550
    assert follow.message_id == got.message_id and bytes(follow.mime) == bytes(got.mime)
    assert follow.next_attempt_at > timezone.now() + timedelta(seconds=50)
    assert follow.delivery_log[0]["outcome"] == "deferred"
    # when it is due, only that recipient is tried
    OutboxMessage.objects.filter(pk=follow.pk).update(next_attempt_at=timezone.now())
    fault.reset()
    sending.send_due(connection_id=fault_connection.pk)
    follow = _get(follow)
    assert follow.status == OutboxStatus.QUEUED and follow.attempts == 2  # 452 again: retried later
    assert not fault.received


def test_all_refused_mixed_codes_retries_only_the_temporary_ones(fault_connection, fault):
    msg = _enqueue(fault_connection, ["rcpt550-never@example.test", "rcpt451-later@example.test"])
    sending.send_due(connection_id=fault_connection.pk)
    got = _get(msg)
    assert got.status == OutboxStatus.QUEUED and got.attempts == 1
    assert got.envelope_to == ["rcpt451-later@example.test"]
    assert got.recipient_results["rcpt550-never@example.test"]["code"] == 550
    OutboxMessage.objects.filter(pk=msg.pk).update(next_attempt_at=timezone.now())
    sending.send_due(connection_id=fault_connection.pk)
    got = _get(msg)
    assert got.attempts == 2
    # the permanent refusal of the first attempt is kept in the record
    assert got.recipient_results["rcpt550-never@example.test"]["code"] == 550
    assert got.recipient_results["rcpt451-later@example.test"]["code"] == 451


def test_idn_addresses_go_on_the_wire_in_idna_form(make_connection, fault):
    conn = make_connection(port=fault.port, default_from="Bücherei <info@bücher.example>")
    msg = _enqueue(conn, ["Zoë <zoe@bücher.example>"])
    sending.send_due(connection_id=conn.pk)
    assert _get(msg).status == OutboxStatus.SENT
    [received] = fault.accepted
    assert received.mail_from == "info@xn--bcher-kva.example"
    assert received.rcpt_tos == ["zoe@xn--bcher-kva.example"]
    parsed = message_from_bytes(received.data, policy=policy.default)
    assert parsed["To"].addresses[0].addr_spec == "zoe@xn--bcher-kva.example"
    assert parsed["To"].addresses[0].display_name == "Zoë"
    assert received.data.isascii()
