"""The Django email backend and `manage.py send_message`, both through the outbox service."""
from __future__ import annotations

import json
from email import message_from_bytes, policy
from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from connections.errors import ConfigurationError, ValidationError
from connections.models import OutboxMessage, OutboxStatus

pytestmark = pytest.mark.django_db

BACKEND = "connections.backends.TenantMailBackend"


def _parsed(message: OutboxMessage):
    return message_from_bytes(bytes(message.mime), policy=policy.default)


# --- the email backend -------------------------------------------------------------------

@pytest.mark.smoke
def test_send_mail_through_the_backend_chosen_in_settings(settings, make_connection):
    conn = make_connection(name="smtp-main")
    settings.EMAIL_BACKEND = BACKEND
    settings.TENANTMAIL_EMAIL_TENANT = conn.tenant.slug
    settings.TENANTMAIL_EMAIL_CONNECTION = "smtp-main"
    assert mail.send_mail("Grüße", "Hallo Welt", None, ["bob@example.test"], html_message="<p>Hallo</p>") == 1
    message = OutboxMessage.objects.get()
    assert message.connection_id == conn.pk and message.status == OutboxStatus.QUEUED
    assert message.from_address == "Acme Support <support@example.test>"  # Django's placeholder replaced
    parsed = _parsed(message)
    assert parsed["Subject"] == "Grüße"
    assert parsed.get_body(("plain",)).get_content().strip() == "Hallo Welt"
    assert parsed.get_body(("html",)).get_content().strip() == "<p>Hallo</p>"


def test_email_message_per_call_connection_keeps_everything(make_connection):
    conn = make_connection(name="smtp-other")
    with mail.get_connection(BACKEND, tenant=conn.tenant.slug, connection="smtp-other") as backend:
        email = mail.EmailMultiAlternatives(
            subject="Report", body="see attached", from_email="Reports <reports@example.test>",
            to=["a@example.test"], cc=["c@example.test"], bcc=["hidden@example.test"],
            reply_to=["help@example.test"], headers={"X-Job": "42", "Message-ID": "<job-42@example.test>"},
            connection=backend,
        )
        email.attach_alternative("<b>see attached</b>", "text/html")
        email.attach("data.csv", "a;b\nü;2\n", "text/csv")
        email.attach("blob.bin", b"\x00\x01\x02", "application/octet-stream")
        assert email.send() == 1
    message = OutboxMessage.objects.get()
    assert message.envelope_from == "reports@example.test"
    assert message.envelope_to == ["a@example.test", "c@example.test", "hidden@example.test"]
    assert message.message_id == "<job-42@example.test>"
    parsed = _parsed(message)
    assert parsed["Reply-To"] == "help@example.test" and parsed["X-Job"] == "42"
    assert parsed["Cc"] == "c@example.test" and parsed["Bcc"] is None
    atts = {a.get_filename(): a.get_payload(decode=True) for a in parsed.iter_attachments()}
    assert atts == {"data.csv": "a;b\nü;2\n".encode(), "blob.bin": b"\x00\x01\x02"}


def test_backend_refuses_bad_messages_unless_fail_silently(make_connection):
    conn = make_connection(name="smtp-x")
    backend = mail.get_connection(BACKEND, tenant=conn.tenant.slug, connection="smtp-x")
    bad = mail.EmailMessage("Hi\nBcc: evil@example.test", "x", None, ["a@example.test"], connection=backend)
    with pytest.raises(ValidationError, match="line break"):
        bad.send()
    quiet = mail.get_connection(BACKEND, fail_silently=True, tenant=conn.tenant.slug, connection="smtp-x")
    assert mail.EmailMessage("Hi\nX", "x", None, ["a@example.test"], connection=quiet).send() == 0
    assert not OutboxMessage.objects.exists()


def test_backend_refuses_header_injection_in_extra_headers_and_attachment_names(make_connection):
    conn = make_connection(name="smtp-x")
    backend = mail.get_connection(BACKEND, tenant=conn.tenant.slug, connection="smtp-x")
    header = mail.EmailMessage("s", "x", None, ["a@example.test"], connection=backend,
                               headers={"X-Tag": "v\r\nBcc: evil@example.test"})
    with pytest.raises(ValidationError, match="Header X-Tag contains a line break"):
        header.send()
    attached = mail.EmailMessage("s", "x", None, ["a@example.test"], connection=backend)
    attached.attach("a\r\nBcc: evil@example.test.txt", b"x", "text/plain")
    with pytest.raises(ValidationError, match="file name contains a line break"):
        attached.send()
    reply = mail.EmailMessage("s", "x", None, ["a@example.test"], connection=backend,
                              reply_to=["r@example.test\nBcc: evil@example.test"])
    with pytest.raises(ValidationError, match="Reply-To contains a line break"):
        reply.send()
    assert not OutboxMessage.objects.exists()


def test_backend_without_a_connection_says_what_to_set(settings):
    settings.TENANTMAIL_EMAIL_TENANT = ""
    settings.TENANTMAIL_EMAIL_CONNECTION = ""
    backend = mail.get_connection(BACKEND)
    with pytest.raises(ConfigurationError, match="TENANTMAIL_EMAIL_TENANT"):
        backend.send_messages([mail.EmailMessage("s", "b", None, ["a@example.test"])])


# --- manage.py send_message --------------------------------------------------------------

def test_command_queues_with_attachments_and_html(make_connection, tmp_path):
    conn = make_connection(name="smtp-main")
    body = tmp_path / "body.txt"
    body.write_text("Hallo aus der Datei\n", encoding="utf-8")
    html = tmp_path / "body.html"
    html.write_text("<p>Hallo</p>", encoding="utf-8")
    att = tmp_path / "Bericht.pdf"
    att.write_bytes(b"%PDF\x00\x01")
    out = StringIO()
    call_command("send_message", conn.tenant.slug, "smtp-main", "--to", "a@example.test, \"Doe, J\" <j@example.test>",
                 "--cc", "c@example.test", "--bcc", "b@example.test", "--subject", "Bericht",
                 "--body-file", str(body), "--html-file", str(html), "--attach", str(att), stdout=out)
    message = OutboxMessage.objects.get()
    assert f"Queued message #{message.pk}" in out.getvalue()
    assert message.envelope_to == ["a@example.test", "j@example.test", "c@example.test", "b@example.test"]
    parsed = _parsed(message)
    assert parsed.get_body(("plain",)).get_content().strip() == "Hallo aus der Datei"
    assert [(a.get_filename(), a.get_content_type()) for a in parsed.iter_attachments()] == [
        ("Bericht.pdf", "application/pdf")]


def test_command_errors_are_clear(make_connection):
    conn = make_connection(name="smtp-main")
    with pytest.raises(CommandError, match="no outbound connection named 'nope'"):
        call_command("send_message", conn.tenant.slug, "nope", "--to", "a@example.test", "--subject", "s",
                     "--body", "b")
    with pytest.raises(CommandError, match="No tenant with slug"):
        call_command("send_message", "no-such-tenant", "smtp-main", "--to", "a@example.test", "--subject", "s",
                     "--body", "b")
    with pytest.raises(CommandError, match="Not queued: To: 'bad' is not a valid"):
        call_command("send_message", conn.tenant.slug, "smtp-main", "--to", "bad", "--subject", "s", "--body", "b")
    with pytest.raises(CommandError, match="Cannot read the attachment"):
        call_command("send_message", conn.tenant.slug, "smtp-main", "--to", "a@example.test", "--subject", "s",
                     "--body", "b", "--attach", "/nonexistent/file.pdf")
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db(transaction=True)  # send_due runs outside a transaction, as in a worker
@pytest.mark.smoke
def test_command_now_sends_and_prints_each_recipient(make_connection, fault):
    conn = make_connection(name="smtp-fault", port=fault.port)
    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("send_message", conn.tenant.slug, "smtp-fault", "--to", "ok@example.test",
                     "--to", "rcpt550-x@example.test", "--subject", "now", "--body", "b", "--now", stdout=out)
    assert exit_info.value.code == 1  # one recipient refused
    text = out.getvalue()
    assert "ok@example.test: accepted" in text
    assert "rcpt550-x@example.test: refused 550" in text and "User unknown" in text
    assert OutboxMessage.objects.get().status == OutboxStatus.SENT
    out = StringIO()
    call_command("send_message", conn.tenant.slug, "smtp-fault", "--to", "fine@example.test",
                 "--subject", "now", "--body", "b", "--now", stdout=out)
    assert "fine@example.test: accepted" in out.getvalue() and "Sent message" in out.getvalue()


@pytest.mark.django_db(transaction=True)  # send_due runs outside a transaction, as in a worker
def test_command_now_failure_exits_non_zero(make_connection, fault):
    conn = make_connection(name="smtp-fault", port=fault.port)
    with pytest.raises(CommandError, match="Not sent:.*552"):
        call_command("send_message", conn.tenant.slug, "smtp-fault", "--to", "data552-x@example.test",
                     "--subject", "s", "--body", "b", "--now")
    with pytest.raises(CommandError, match="stays queued"):
        call_command("send_message", conn.tenant.slug, "smtp-fault", "--to", "data451-x@example.test",
                     "--subject", "s", "--body", "b", "--now")


def test_backend_keeps_mimebase_and_message_attachments(make_connection):
    from email.mime.application import MIMEApplication

    conn = make_connection(name="smtp-mime")
    backend = mail.get_connection(BACKEND, tenant=conn.tenant.slug, connection="smtp-mime")
    inner = mail.EmailMessage("Inner", "inner body", "x@example.test", ["y@example.test"])
    email = mail.EmailMessage("Outer", "outer", None, ["a@example.test"], connection=backend)
    part = MIMEApplication(b"\x00\x01binary", "octet-stream")
    part.add_header("Content-Disposition", "attachment", filename="raw.bin")
    email.attach(part)
    email.attach("inner.eml", inner.message(), "message/rfc822")
    assert email.send() == 1
    parsed = _parsed(OutboxMessage.objects.get())
    atts = {a.get_filename(): a.get_payload(decode=True) for a in parsed.iter_attachments()}
    assert atts["raw.bin"] == b"\x00\x01binary"
    inner_parsed = message_from_bytes(atts["inner.eml"], policy=policy.default)
    assert inner_parsed["Subject"] == "Inner" and inner_parsed.get_content().strip() == "inner body"


@pytest.mark.django_db(transaction=True)  # send_due runs outside a transaction, as in a worker
def test_command_now_on_a_disabled_connection_stores_nothing_and_says_why(make_connection):
    conn = make_connection(name="smtp-off", enabled=False)
    with pytest.raises(CommandError, match="is disabled, so --now cannot send"):
        call_command("send_message", conn.tenant.slug, "smtp-off", "--to", "a@example.test",
                     "--subject", "s", "--body", "b", "--now")
    assert not OutboxMessage.objects.exists()
    out = StringIO()
    call_command("send_message", conn.tenant.slug, "smtp-off", "--to", "a@example.test",
                 "--subject", "s", "--body", "b", stdout=out)
    assert "the connection is disabled: it is sent once that changes" in out.getvalue()
    assert OutboxMessage.objects.get().status == OutboxStatus.QUEUED


@pytest.mark.django_db(transaction=True)  # send_due runs outside a transaction, as in a worker
def test_the_command_json_of_now_has_each_recipients_reply_and_queue_id(make_connection, fault):
    conn = make_connection(name="smtp-fault", port=fault.port)
    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("send_message", conn.tenant.slug, "smtp-fault", "--to", "ok@example.test",
                     "--to", "rcpt550-x@example.test", "--subject", "now", "--body", "b", "--now", "--json",
                     stdout=out)
    assert exit_info.value.code == 1
    record = json.loads(out.getvalue())
    ok = record["recipients"]["ok@example.test"]
    assert record["status"] == "sent"
    assert (ok["status"], ok["rcpt_code"], ok["code"]) == ("accepted", 250, 250)
    assert ok["queue_id"].startswith("FAULT") and ok["text"].endswith(ok["queue_id"])
    refused = record["recipients"]["rcpt550-x@example.test"]
    assert refused["status"] == "refused" and refused["code"] == 550 and "User unknown" in refused["text"]
