"""Receiver attributes, message templates, enqueue_many and the command's new options (issue 19)."""
from __future__ import annotations

import json
from email import message_from_bytes, policy
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections.errors import ValidationError
from connections.models import OutboxMessage, OutboxStatus, OutboxTemplate
from connections.services.outbound import enqueue, sending, templates
from connections.services.persistence import outbound as persistence

pytestmark = pytest.mark.django_db


def _parsed(message: OutboxMessage):
    return message_from_bytes(bytes(OutboxMessage.objects.get(pk=message.pk).mime), policy=policy.default)


# --- receiver attributes ------------------------------------------------------------------

def test_connection_defaults_fill_a_message_without_recipients_or_subject(make_connection):
    conn = make_connection(default_to="ops@example.test, \"Doe, J\" <j@example.test>", default_cc="cc@example.test",
                           default_bcc="audit@example.test", default_subject="Report from SAP")
    msg = enqueue.enqueue(connection_id=conn.pk, text="x", dispatch=False)
    assert msg.envelope_to == ["ops@example.test", "j@example.test", "cc@example.test", "audit@example.test"]
    parsed = _parsed(msg)
    assert parsed["Subject"] == "Report from SAP" and "audit" not in str(parsed)  # Bcc only in the envelope
    # a message's own recipients and subject win (all of the default recipients are replaced)
    own = enqueue.enqueue(connection_id=conn.pk, to=["me@example.test"], subject="Mine", text="x", dispatch=False)
    assert own.envelope_to == ["me@example.test"] and own.subject == "Mine"


@pytest.mark.parametrize(("body_type", "charset", "cte", "text", "want_cte"), [
    ("text/csv", "windows-1252", "auto", "a;b\n5 €;ü\n", "quoted-printable"),
    ("text/csv", "iso-8859-1", "8bit", "a;b\nü;1\n", "8bit"),
    ("application/json", "utf-8", "auto", '{"a": 1}\n', "7bit"),
    ("application/json", "utf-8", "base64", '{"a": "ü"}\n', "base64"),
    ("application/xml", "us-ascii", "quoted-printable", "<a>1</a>\n", "quoted-printable"),
    ("application/octet-stream", "utf-8", "auto", "binary-ish ü\n", "base64"),
    ("text/plain", "utf-8", "7bit", "plain\n", "7bit"),
])
def test_body_type_charset_and_transfer_encoding(make_connection, body_type, charset, cte, text, want_cte):
    conn = make_connection(body_type=body_type, body_charset=charset, transfer_encoding=cte)
    msg = enqueue.enqueue(connection_id=conn.pk, to=["a@example.test"], subject="s", text=text, dispatch=False)
    parsed = _parsed(msg)
    assert parsed.get_content_type() == body_type
    assert parsed["Content-Transfer-Encoding"] == want_cte
    if body_type != "application/octet-stream":
        assert parsed.get_content_charset() == charset
    payload = parsed.get_payload(decode=True)
    assert payload.decode(charset).replace("\r\n", "\n") == text


def test_a_body_the_charset_cannot_hold_or_7bit_cannot_carry_is_refused(make_connection):
    latin = make_connection(body_charset="iso-8859-1")
    with pytest.raises(ValidationError, match="iso-8859-1 cannot hold: '€'"):
        enqueue.enqueue(connection_id=latin.pk, to=["a@example.test"], subject="s", text="5 €", dispatch=False)
    seven = make_connection(transfer_encoding="7bit")
    with pytest.raises(ValidationError, match="cannot be sent as 7bit"):
        enqueue.enqueue(connection_id=seven.pk, to=["a@example.test"], subject="s", text="ü", dispatch=False)
    csv = make_connection(body_type="text/csv")
    with pytest.raises(ValidationError, match="give the body as text, not HTML"):
        enqueue.enqueue(connection_id=csv.pk, to=["a@example.test"], subject="s", html="<p>x</p>", dispatch=False)
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db(transaction=True)  # send_due runs outside a transaction, as in a worker
@pytest.mark.mailservers
def test_a_csv_body_in_windows_1252_arrives_through_postfix(mail_servers, tenant):
    from .test_postfix import _connection, _read_back

    conn, _ = _connection(mail_servers, tenant, body_type="text/csv", body_charset="windows-1252")
    rcpt, _ = mail_servers.add_user()
    msg = enqueue.enqueue(connection_id=conn.pk, to=[rcpt], subject="csv", text="Preis;Währung\n5;€\n",
                         dispatch=False)
    assert sending.send_due(connection_id=conn.pk).sent == 1
    [raw] = _read_back(mail_servers, rcpt)
    got = message_from_bytes(raw, policy=policy.default)
    assert got.get_content_type() == "text/csv" and got.get_content_charset() == "windows-1252"
    assert got.get_payload(decode=True).decode("windows-1252").replace("\r\n", "\n") == "Preis;Währung\n5;€\n"
    assert OutboxMessage.objects.get(pk=msg.pk).status == OutboxStatus.SENT


# --- templates ----------------------------------------------------------------------------

@pytest.fixture
def invoice(tenant):
    return OutboxTemplate.objects.create(
        tenant=tenant, name="invoice", subject="Invoice {{ number }}\nfor {{ customer }}",
        text_body="Dear {{ customer }},\nplease pay {{ amount }}.\n",
        html_body="<p>Dear {{ customer }}, please pay <b>{{ amount }}</b>.</p>",
    )


def test_a_template_is_rendered_once_at_enqueue_and_the_result_stored(make_connection, invoice):
    conn = make_connection()
    msg = enqueue.enqueue(connection_id=conn.pk, to=["a@example.test"], template="invoice",
                         context={"number": 42, "customer": "<Zoë & Co>", "amount": "10 €"}, dispatch=False)
    assert msg.subject == "Invoice 42 for <Zoë & Co>"  # one line, not HTML-escaped
    assert msg.text_body == "Dear <Zoë & Co>,\nplease pay 10 €.\n"
    assert msg.html_body == "<p>Dear &lt;Zoë &amp; Co&gt;, please pay <b>10 €</b>.</p>"  # escaped in HTML
    invoice.subject = "changed"
    invoice.save()
    assert OutboxMessage.objects.get(pk=msg.pk).subject == "Invoice 42 for <Zoë & Co>"  # stored, not re-rendered


def test_templates_are_per_tenant_and_errors_are_clear(make_connection, invoice):
    from connections.models import Tenant

    other = make_connection(tenant=Tenant.objects.create(name="Other", slug="other-t"))
    with pytest.raises(ValidationError, match="no message template named 'invoice'"):
        enqueue.enqueue(connection_id=other.pk, to=["a@example.test"], template="invoice", dispatch=False)
    OutboxTemplate.objects.create(tenant=invoice.tenant, name="broken", subject="{% if %}")
    with pytest.raises(ValidationError, match="Template 'broken', subject"):
        templates.render(tenant_id=invoice.tenant_id, name="broken", context={})
    assert not OutboxMessage.objects.exists()


def test_the_command_takes_a_template_a_context_file_send_after_and_prints_json(make_connection, invoice, tmp_path):
    conn = make_connection(name="smtp-main")
    ctx = tmp_path / "ctx.json"
    ctx.write_text(json.dumps({"number": 7, "customer": "ACME", "amount": "3 €"}), encoding="utf-8")
    out = StringIO()
    call_command("send_message", conn.tenant.slug, "smtp-main", "--to", "a@example.test", "--template", "invoice",
                 "--context-file", str(ctx), "--send-after", "2030-01-02T03:04:00+00:00", "--json", stdout=out)
    record = json.loads(out.getvalue())
    msg = OutboxMessage.objects.get(pk=record["id"])
    assert msg.subject == "Invoice 7 for ACME" and "please pay 3 €" in msg.text_body
    assert record["status"] == "queued" and record["send_after"].startswith("2030-01-02T03:04:00")
    assert msg.next_attempt_at == msg.send_after and msg.send_after.year == 2030
    assert record["recipients"] == {"a@example.test": {"status": "pending"}}
    with pytest.raises(CommandError, match="not a date and time"):
        call_command("send_message", conn.tenant.slug, "smtp-main", "--to", "a@example.test", "--body", "b",
                     "--send-after", "next tuesday")
    ctx.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(CommandError, match="must hold a JSON object"):
        call_command("send_message", conn.tenant.slug, "smtp-main", "--to", "a@example.test", "--template",
                     "invoice", "--context-file", str(ctx))
    with pytest.raises(CommandError, match="--body or --body-file, or a --template"):
        call_command("send_message", conn.tenant.slug, "smtp-main", "--to", "a@example.test")


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


# --- enqueue_many ---------------------------------------------------------------------------

@pytest.mark.smoke
def test_enqueue_many_stores_all_in_one_transaction_or_nothing(make_connection, invoice):
    conn = make_connection()
    items = [{"to": [f"u{i}@example.test"], "subject": f"m{i}", "text": "x"} for i in range(5)]
    items.append({"to": ["t@example.test"], "template": "invoice", "context": {"number": 1, "customer": "C",
                                                                                "amount": "1"}})
    with CaptureQueriesContext(db_connection) as queries:
        result = enqueue.enqueue_many(connection_id=conn.pk, messages=items, dispatch=False)
    assert [m.subject for m in result.messages] == ["m0", "m1", "m2", "m3", "m4", "Invoice 1 for C"]
    assert all(m.pk for m in result.messages) and OutboxMessage.objects.count() == 6
    inserts = [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1  # one INSERT for all of them
    bad = items[:2] + [{"to": ["not an address"], "subject": "bad"}]
    with pytest.raises(ValidationError, match="Message 3: To:"):
        enqueue.enqueue_many(connection_id=conn.pk, messages=bad)
    assert OutboxMessage.objects.count() == 6  # nothing of the failed call
    skipped = enqueue.enqueue_many(connection_id=conn.pk, messages=bad, skip_invalid=True, dispatch=False)
    assert len(skipped) == 2 and skipped.errors[0][0] == 2


def test_the_email_backend_queues_a_batch_with_enqueue_many(make_connection, monkeypatch):
    conn = make_connection(name="smtp-main")
    calls = []
    real = enqueue.enqueue_many

    def spy(**kwargs):
        calls.append(len(kwargs["messages"]))
        return real(**kwargs)

    monkeypatch.setattr(enqueue, "enqueue_many", spy)
    with mail.get_connection("connections.backends.TenantMailBackend", tenant=conn.tenant.slug,
                             connection="smtp-main") as backend:
        sent = backend.send_messages([mail.EmailMessage(f"s{i}", "body", to=[f"u{i}@example.test"])
                                      for i in range(20)])
    assert sent == 20 and calls == [20]
    assert OutboxMessage.objects.filter(connection=conn).count() == 20


def test_the_email_backend_renders_a_template_attribute(make_connection, invoice):
    conn = make_connection(name="smtp-main")
    message = mail.EmailMessage(to=["a@example.test"])
    message.template, message.context = "invoice", {"number": 9, "customer": "Z", "amount": "2"}
    with mail.get_connection("connections.backends.TenantMailBackend", tenant=conn.tenant.slug,
                             connection="smtp-main") as backend:
        assert backend.send_messages([message]) == 1
    assert OutboxMessage.objects.get().subject == "Invoice 9 for Z"


@pytest.mark.django_db(transaction=True)  # send_due runs outside a transaction, as in a worker
def test_enqueue_many_due_messages_are_sent(make_connection, fault):
    conn = make_connection(port=fault.port)
    later = timezone.now() + timezone.timedelta(hours=1)
    result = enqueue.enqueue_many(connection_id=conn.pk, dispatch=False, messages=[
        {"to": ["a@example.test"], "subject": "now", "text": "x"},
        {"to": ["b@example.test"], "subject": "later", "text": "x", "send_after": later}])
    assert sending.send_due(connection_id=conn.pk).sent == 1
    assert [OutboxMessage.objects.get(pk=m.pk).status for m in result.messages] == ["sent", "queued"]


@pytest.mark.django_db(transaction=True)  # send_due runs outside a transaction, as in a worker
def test_a_big_batch_goes_in_by_copy_on_postgresql_and_every_field_lands(make_connection, fault):
    conn = make_connection(port=fault.port)
    later = timezone.now() + timezone.timedelta(hours=2)
    items = [{"to": [f"u{i}@example.test"], "cc": ["Zoë <c@example.test>"], "bcc": ["b@example.test"],
              "subject": f"Grüße {i}", "text": f"body {i}", "html": "<p>ü</p>" if i % 2 else "",
              "extra_headers": {"X-Batch": str(i)}, "priority": i % 3,
              **({"send_after": later} if i == 0 else {})} for i in range(persistence.COPY_MIN + 5)]
    with CaptureQueriesContext(db_connection) as queries:
        result = enqueue.enqueue_many(connection_id=conn.pk, messages=items, dispatch=False)
    if db_connection.vendor == "postgresql":
        assert not any(q["sql"].startswith("INSERT") for q in queries.captured_queries)  # COPY
    stored = {m.pk: m for m in OutboxMessage.objects.filter(connection=conn)}
    assert sorted(stored) == sorted(m.pk for m in result.messages)
    for given, made in zip(items, result.messages):
        got = stored[made.pk]
        assert (got.subject, got.to, got.cc, got.bcc, got.extra_headers, got.priority) == (
            given["subject"], given["to"], given["cc"], given["bcc"], given["extra_headers"], given["priority"])
        assert bytes(got.mime) == bytes(made.mime) and got.size == len(bytes(made.mime))
        assert got.tenant_id == conn.tenant_id and got.created_at and got.status == OutboxStatus.QUEUED
        assert got.envelope_to == [given["to"][0], "c@example.test", "b@example.test"]
    assert stored[result.messages[0].pk].send_after == later
    assert sending.send_due(connection_id=conn.pk).sent == len(items) - 1
    assert len(fault.accepted) == len(items) - 1
