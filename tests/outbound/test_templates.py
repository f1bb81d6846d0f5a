"""templates.py: message templates rendered once at enqueue, per tenant, from every way in."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError

from connections.errors import ValidationError
from connections.models import OutboxMessage, OutboxTemplate
from connections.services.outbound import enqueue, templates

pytestmark = pytest.mark.django_db


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


def test_the_email_backend_renders_a_template_attribute(make_connection, invoice):
    conn = make_connection(name="smtp-main")
    message = mail.EmailMessage(to=["a@example.test"])
    message.template, message.context = "invoice", {"number": 9, "customer": "Z", "amount": "2"}
    with mail.get_connection("connections.backends.TenantMailBackend", tenant=conn.tenant.slug,
                             connection="smtp-main") as backend:
        assert backend.send_messages([message]) == 1
    assert OutboxMessage.objects.get().subject == "Invoice 9 for Z"
