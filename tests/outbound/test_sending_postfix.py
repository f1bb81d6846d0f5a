"""The outbox against the real Postfix of the fixture; each mail read back over IMAP from Dovecot."""
from __future__ import annotations

import re

import hashlib
import uuid
from email import message_from_bytes, policy

import pytest

from connections.models import OutboundConnection, OutboxMessage, OutboxStatus, UserCredential
from connections.services.outbound import enqueue, sending
from connections.services.outbound.mime import AttachmentIn
from connections.services.setup import credentials

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]  # send_due outside a transaction


def _connection(mail_servers, tenant, *, listener="submission", protection="starttls_mandatory",
                authentication="plain", password=None, **overrides) -> tuple[OutboundConnection, str]:
    address, real_password = mail_servers.add_user()
    name = f"cred-{uuid.uuid4().hex[:6]}"
    cred = credentials.save_artifact(
        credential=UserCredential(tenant=tenant, name=name, username=address),
        password=password or real_password,
    )
    credentials.deploy(credential_id=cred.pk, user=None)
    values = dict(
        tenant=tenant, name=f"postfix-{uuid.uuid4().hex[:6]}", host=mail_servers.host,
        port=mail_servers.ports[listener], protection=protection, authentication=authentication,
        credential_name=name, trusted_ca=mail_servers.ca_pem, timeout=10,
        default_from=f"Sénder Nämé <{address}>",
    )
    values.update(overrides)
    return OutboundConnection.objects.create(**values), address


def _read_back(mail_servers, address: str, count: int = 1) -> list[bytes]:
    return list(mail_servers.wait_for_messages(address, count=count, timeout=20).values())


def test_delivered_mail_matches_what_was_queued(mail_servers, tenant):
    conn, sender = _connection(mail_servers, tenant)
    rcpt, _ = mail_servers.add_user()
    copy_rcpt, _ = mail_servers.add_user()
    pdf = bytes(range(256)) * 300 + b"\r\n.\r\n..\r\nFrom the end\r\n"  # dots and "From" survive
    text_file = "Zeile 1 ü\r\n.\r\nZeile 3\n".encode("utf-8")
    message = enqueue.enqueue(
        connection_id=conn.pk,
        to=[f"Zoë Ångström <{rcpt}>"], cc=[f'"Doe, John" <{copy_rcpt}>'],
        subject="Grüße aus Köln — 東京 ✓ " + "lang " * 20,
        text="Hallo Zoë,\n.\nein Punkt allein auf einer Zeile.\nFrom here on\n",
        html="<p>Hallo <b>Zoë</b> — 東京</p>\n",
        attachments=[AttachmentIn("Bericht März 2026.pdf", pdf, "application/pdf"),
                     AttachmentIn("notiz.txt", text_file, "text/plain")],
        extra_headers={"X-Campaign": "Frühling"},
        dispatch=False,
    )
    report = sending.send_due(connection_id=conn.pk)
    assert report.sent == 1, str(report)
    sent = OutboxMessage.objects.get(pk=message.pk)
    assert sent.status == OutboxStatus.SENT
    assert set(sent.recipient_results) == {rcpt, copy_rcpt}
    # Postfix's own words per recipient: "250 2.1.5 Ok" to RCPT TO, "250 2.0.0 Ok: queued as <id>"
    for result in sent.recipient_results.values():
        assert result["status"] == "accepted" and result["rcpt_code"] == 250 and result["code"] == 250
        assert re.fullmatch(r"[0-9A-Za-z]{6,}", result["queue_id"]), result
        assert result["text"].endswith(f"queued as {result['queue_id']}")

    [raw] = _read_back(mail_servers, rcpt)
    [raw_cc] = _read_back(mail_servers, copy_rcpt)
    # What Dovecot hands out is our message byte for byte, after the trace headers the
    # servers put on top (Return-Path, Delivered-To, Received).
    assert raw.endswith(bytes(sent.mime)), raw[:600]
    assert raw_cc.endswith(bytes(sent.mime))
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == "Grüße aus Köln — 東京 ✓ " + "lang " * 20
    assert parsed["Message-ID"] == sent.message_id
    assert parsed["Date"].datetime is not None
    assert parsed["X-Campaign"] == "Frühling"
    [frm] = parsed["From"].addresses
    assert (frm.display_name, frm.addr_spec) == ("Sénder Nämé", sender)
    assert [(a.display_name, a.addr_spec) for a in parsed["To"].addresses] == [("Zoë Ångström", rcpt)]
    assert [(a.display_name, a.addr_spec) for a in parsed["Cc"].addresses] == [("Doe, John", copy_rcpt)]
    plain = parsed.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert plain == "Hallo Zoë,\n.\nein Punkt allein auf einer Zeile.\nFrom here on\n"
    assert parsed.get_body(("html",)).get_content().replace("\r\n", "\n") == "<p>Hallo <b>Zoë</b> — 東京</p>\n"
    atts = {a.get_filename(): a.get_payload(decode=True) for a in parsed.iter_attachments()}
    assert hashlib.sha256(atts["Bericht März 2026.pdf"]).digest() == hashlib.sha256(pdf).digest()
    assert atts["notiz.txt"] == text_file


def test_bcc_is_delivered_without_a_bcc_header(mail_servers, tenant):
    conn, _ = _connection(mail_servers, tenant)
    to, _ = mail_servers.add_user()
    hidden, _ = mail_servers.add_user()
    enqueue.enqueue(connection_id=conn.pk, to=[to], bcc=[hidden], subject="bcc", text="x", dispatch=False)
    sending.send_due(connection_id=conn.pk)
    [raw] = _read_back(mail_servers, hidden)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"Bcc" not in head and hidden.encode() not in head.split(b"Received:")[-1].split(b"\r\n", 1)[-1]
    assert len(_read_back(mail_servers, to)) == 1


def test_unknown_recipient_is_refused_and_recorded_the_others_get_it(mail_servers, tenant):
    conn, _ = _connection(mail_servers, tenant)
    known, _ = mail_servers.add_user()
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@{mail_servers.domain}"
    message = enqueue.enqueue(connection_id=conn.pk, to=[known, unknown], subject="partial", text="x",
                              dispatch=False)
    sending.send_due(connection_id=conn.pk)
    sent = OutboxMessage.objects.get(pk=message.pk)
    assert sent.status == OutboxStatus.SENT
    assert sent.recipient_results[known]["status"] == "accepted" and sent.recipient_results[known]["queue_id"]
    refusal = sent.recipient_results[unknown]
    assert refusal["status"] == "refused" and refusal["code"] == 550
    assert "unknown" in refusal["text"].lower()
    assert len(_read_back(mail_servers, known)) == 1


def test_all_recipients_unknown_fails_at_once_with_postfixs_reply(mail_servers, tenant):
    conn, _ = _connection(mail_servers, tenant)
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@{mail_servers.domain}"
    message = enqueue.enqueue(connection_id=conn.pk, to=[unknown], subject="s", text="x", dispatch=False)
    sending.send_due(connection_id=conn.pk)
    failed = OutboxMessage.objects.get(pk=message.pk)
    assert failed.status == OutboxStatus.FAILED and failed.attempts == 1
    assert "550" in failed.last_error and "unknown" in failed.last_error.lower()


@pytest.mark.parametrize("listener,protection,authentication", [
    ("submission", "starttls_mandatory", "plain"),
    ("smtps", "ssl_tls", "plain"),
    ("smtp_notls", "off", "encrypted"),  # CRAM-MD5: the password never crosses in the clear
])
def test_many_messages_over_one_session_per_protection(mail_servers, tenant, listener, protection, authentication):
    conn, _ = _connection(mail_servers, tenant, listener=listener, protection=protection,
                          authentication=authentication)
    rcpt, _ = mail_servers.add_user()
    ids = [enqueue.enqueue(connection_id=conn.pk, to=[rcpt], subject=f"n{i}", text=f"message {i}",
                           dispatch=False).pk for i in range(5)]
    report = sending.send_due(connection_id=conn.pk)
    assert report.sent == 5 and report.sessions == 1, str(report)
    delivered = _read_back(mail_servers, rcpt, count=5)
    subjects = sorted(message_from_bytes(r, policy=policy.default)["Subject"] for r in delivered)
    assert subjects == [f"n{i}" for i in range(5)]
    assert set(OutboxMessage.objects.filter(pk__in=ids).values_list("status", flat=True)) == {OutboxStatus.SENT}
    conn.refresh_from_db()
    assert conn.smtp_max_size and conn.smtp_max_size > 1_000_000  # Postfix's SIZE, remembered


def test_wrong_password_holds_the_messages(mail_servers, tenant):
    conn, _ = _connection(mail_servers, tenant, password="definitely-wrong")
    rcpt, _ = mail_servers.add_user()
    message = enqueue.enqueue(connection_id=conn.pk, to=[rcpt], subject="s", text="x", dispatch=False)
    report = sending.send_due(connection_id=conn.pk)
    held = OutboxMessage.objects.get(pk=message.pk)
    assert held.status == OutboxStatus.QUEUED and held.attempts == 0
    assert "authentication failed" in held.last_error and "definitely-wrong" not in held.last_error
    assert held.delivery_log[-1]["outcome"] == "held" and report.error


def test_test_mail_arrives(mail_servers, tenant):
    conn, _ = _connection(mail_servers, tenant)
    rcpt, _ = mail_servers.add_user()
    enqueue.send_test_mail(connection_id=conn.pk, to=rcpt)
    sending.send_due(connection_id=conn.pk)
    [raw] = _read_back(mail_servers, rcpt)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == f"TenantMail test message from {conn.name}"
    assert parsed["X-TenantMail-Test"] == "yes"
