"""Sending over SMTPClient (connections/mail/smtp_send.py) against the real Postfix of the fixture,
and a scripted server for faults."""
from __future__ import annotations

import smtplib
import time
import uuid

import pytest

from connections.mail import SMTPClient
from connections.mail.errors import ConnectError, SMTPReplyError

from .test_smtp import RAW, _fake_settings, _message, smtp_script

pytestmark = pytest.mark.mailservers


@pytest.mark.parametrize("pipelining", [True, False])
def test_per_recipient_results_and_all_refused(mail_servers, pipelining):
    address, password = mail_servers.add_user()
    other, _ = mail_servers.add_user()
    unknown = f"nobody-{uuid.uuid4().hex[:6]}@{mail_servers.domain}"
    settings = mail_servers.mail_settings(protocol="smtp", protection="starttls_mandatory", authentication="plain", username=address)
    with SMTPClient(settings, password, pipelining=pipelining) as smtp:
        result = smtp.send(sender=address, recipients=[address, unknown, other], message=_message(address, address, "x", b"hi\r\n"))
        assert result.accepted == [address, other]
        assert list(result.refused) == [unknown]
        assert result.refused[unknown][0] == 550 and "unknown" in result.refused[unknown][1].lower()
        with pytest.raises(SMTPReplyError) as info:
            smtp.send(sender=address, recipients=[unknown], message=_message(address, unknown, "x", b"hi\r\n"))
        assert info.value.code == 550 and not info.value.transient
        assert list(info.value.refused) == [unknown]
        # The session is still usable after a refused transaction.
        assert smtp.send(sender=address, recipients=[other], message=_message(address, other, "y", b"again\r\n")).accepted == [other]
    assert len(mail_servers.wait_for_messages(other, count=2)) == 2


def test_check_addresses_sends_nothing(mail_servers):
    address, password = mail_servers.add_user()
    unknown = f"nobody-{uuid.uuid4().hex[:6]}@{mail_servers.domain}"
    settings = mail_servers.mail_settings(protocol="smtp", protection="ssl_tls", authentication="encrypted", username=address)
    with SMTPClient(settings, password) as smtp:
        results = smtp.check_addresses(sender=address, recipients=[address, unknown])
        assert results[address][0] == 250
        assert results[unknown][0] == 550
        smtp.noop()
    time.sleep(0.3)
    assert mail_servers.server_copies(address) == {}


@pytest.mark.parametrize("pipelining", [True, False])
def test_421_mid_session_is_a_transient_connect_error(scripted, pipelining):
    server = scripted(smtp_script(drop_on_rcpt="b@x.test"))
    with SMTPClient(_fake_settings(server), None, pipelining=pipelining) as smtp:
        with pytest.raises(ConnectError) as info:
            smtp.send(sender="s@x.test", recipients=["a@x.test", "b@x.test"], message=RAW)
    assert info.value.transient and "421" in info.value.message
    assert info.value.maybe_delivered is False


@pytest.mark.parametrize("pipelining", [True, False])
def test_451_for_one_recipient_is_recorded_and_the_rest_sent(scripted, pipelining):
    replies = {"a@x.test": "250 2.1.5 Ok", "b@x.test": "451 4.3.0 Try again later"}
    server = scripted(smtp_script(rcpt_reply=lambda a: replies[a]))
    with SMTPClient(_fake_settings(server), None, pipelining=pipelining) as smtp:
        result = smtp.send(sender="s@x.test", recipients=["a@x.test", "b@x.test"], message=RAW)
    assert result.accepted == ["a@x.test"]
    assert result.refused == {"b@x.test": (451, "4.3.0 Try again later")}


def test_452_for_every_recipient_is_transient(scripted):
    server = scripted(smtp_script(rcpt_reply=lambda a: "452 4.5.3 Too many recipients"))
    with SMTPClient(_fake_settings(server), None) as smtp:
        with pytest.raises(SMTPReplyError) as info:
            smtp.send(sender="s@x.test", recipients=["a@x.test"], message=RAW)
    assert info.value.code == 452 and info.value.transient
    assert b"Subject: x" not in server.data  # the message itself was never sent


def test_550_at_mail_from_is_permanent(scripted):
    server = scripted(smtp_script(mail_reply="550 5.7.1 Sender rejected"))
    with SMTPClient(_fake_settings(server), None, pipelining=False) as smtp:
        with pytest.raises(SMTPReplyError) as info:
            smtp.send(sender="s@x.test", recipients=["a@x.test"], message=RAW)
    assert info.value.code == 550 and not info.value.transient
    assert "Sender rejected" in info.value.message


def test_552_after_data_is_permanent(scripted):
    server = scripted(smtp_script(final_reply="552 5.3.4 Message size exceeds fixed limit"))
    with SMTPClient(_fake_settings(server), None) as smtp:
        with pytest.raises(SMTPReplyError) as info:
            smtp.send(sender="s@x.test", recipients=["a@x.test"], message=RAW)
        assert info.value.code == 552 and not info.value.transient
        # Still usable afterwards.
        server_ok = smtp.send  # noqa: F841


def test_message_over_the_servers_size_limit_is_refused_before_sending(scripted):
    server = scripted(smtp_script(extensions=("PIPELINING", "SIZE 1000")))
    with SMTPClient(_fake_settings(server), None) as smtp:
        assert smtp.max_size == 1000
        with pytest.raises(SMTPReplyError) as info:
            smtp.send(sender="s@x.test", recipients=["a@x.test"], message=b"Subject: big\r\n\r\n" + b"x" * 2000)
        assert info.value.code == 552 and not info.value.transient and "1000 bytes" in info.value.message
        assert smtp.send(sender="s@x.test", recipients=["a@x.test"], message=RAW).accepted == ["a@x.test"]
    assert b"MAIL FROM" in server.data and server.data.count(b"MAIL FROM") == 1


def test_size_and_body_parameters(scripted):
    server = scripted(smtp_script())
    with SMTPClient(_fake_settings(server), None) as smtp:
        smtp.send(sender="s@x.test", recipients=["a@x.test"], message="Subject: ü\r\n\r\nä\r\n".encode())
    assert b"MAIL FROM:<s@x.test> SIZE=" in server.data and b"BODY=8BITMIME" in server.data


def test_drop_after_data_is_transient_and_maybe_delivered(scripted):
    server = scripted(smtp_script(drop_after_payload=True))
    with SMTPClient(_fake_settings(server), None) as smtp:
        with pytest.raises(ConnectError) as info:
            smtp.send(sender="s@x.test", recipients=["a@x.test"], message=RAW)
    assert info.value.transient and info.value.maybe_delivered
    assert info.value.message.endswith("(after the data, before the reply: may have been delivered)")
    assert "may have been delivered" in info.value.hint


@pytest.mark.parametrize(("reply", "queue_id"), [
    ("2.0.0 Ok: queued as 4XyzAbC12", "4XyzAbC12"),
    ("OK id=1tB2cD-0004xY-3z", "1tB2cD-0004xY-3z"),
    ("2.0.0 OK  1733490000 5b1f-gsmtp", ""),
])
def test_queue_id_of_a_final_reply(reply, queue_id):
    from connections.mail.smtp_send import queue_id_of

    assert queue_id_of(reply) == queue_id


def test_server_too_slow_to_answer_data(scripted):
    def slow_after_data(conn):
        smtp_script()  # noqa: B018 - for symmetry; the handler below is hand-written
        conn.send("220 fake\r\n")
        while True:
            line = conn.readline()
            if not line:
                return
            if line.upper().startswith(b"EHLO"):
                conn.send("250 fake\r\n")
            elif line.upper().startswith(b"DATA"):
                conn.send("354 go\r\n")
                conn.read_until(b"\r\n.\r\n")
                time.sleep(4)
                return
            else:
                conn.send("250 ok\r\n")

    server = scripted(slow_after_data)
    with SMTPClient(_fake_settings(server, timeout=1), None) as smtp:
        with pytest.raises(ConnectError) as info:
            smtp.send(sender="s@x.test", recipients=["a@x.test"], message=RAW)
    assert info.value.transient and info.value.maybe_delivered


@pytest.mark.parametrize("pipelining", [True, False])
def test_before_data_runs_while_the_server_answers_data(scripted, pipelining):
    """The caller's "data started" step overlaps the server's reply to DATA (it costs the
    outbox no round trip of its own): this server answers DATA only once that step ran."""
    import threading

    stepped = threading.Event()
    answered_after_step: list[bool] = []

    def handler(conn):
        conn.send("220 fake.test ESMTP\r\n")
        while True:
            line = conn.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.send("250-fake.test\r\n250 PIPELINING\r\n")
            elif verb == b"DATA":
                answered_after_step.append(stepped.wait(3))
                conn.send("354 go ahead\r\n")
                while conn.readline() not in (b".\r\n", b""):
                    pass
                conn.send("250 2.0.0 Ok: queued\r\n")
            elif verb == b"QUIT":
                conn.send("221 bye\r\n")
                return
            else:
                conn.send("250 ok\r\n")

    server = scripted(handler)
    with SMTPClient(_fake_settings(server), None, pipelining=pipelining) as smtp:
        result = smtp.send(sender="s@x.test", recipients=["a@x.test"], message=RAW, before_data=stepped.set)
    assert result.accepted == ["a@x.test"] and answered_after_step == [True]
    assert b"\r\n.\r\n" in server.data  # and the data went out after it


@pytest.mark.parametrize("address", [
    "a@b.example", "", "Name <a@b.example>", "<a@b.example>", "a b@example", '"x y"@b.example',
    "a@[127.0.0.1]", "bü@x.example", "a@b", "x(comment)@y.example", "o'hara+tag@sub.b-c.example",
    "a..b@c.example", ".a@b.example",
])
def test_envelope_addresses_are_quoted_as_smtplib_does(address):
    from connections.mail.smtp_send import _quoted

    assert _quoted(address) == smtplib.quoteaddr(address)
