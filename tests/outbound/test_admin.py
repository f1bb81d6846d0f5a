"""Admin: compose with attachments, Send test mail, requeue/cancel, the delivery record, scoping."""
from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from connections.models import Membership, OutboxMessage, OutboxStatus, Tenant
from connections.services.outbound import enqueue, sending

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(django_user_model, tenant):
    user = django_user_model.objects.create_user("operator", password="pw", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role="operator")
    return user


@pytest.fixture
def viewer(django_user_model, tenant):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role="viewer")
    return user


@pytest.fixture
def other_conn(make_connection):
    other = Tenant.objects.create(name="Other", slug="other-tenant")
    return make_connection(tenant=other, name="theirs")


def test_operator_composes_a_message_with_attachments(client, operator, make_connection, other_conn):
    conn = make_connection()
    client.force_login(operator)
    add_url = reverse("admin:connections_outboxmessage_add")
    page = client.get(add_url)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'enctype="multipart/form-data"' in html
    assert conn.name in html and "theirs" not in html  # only the user's tenants' connections
    assert 'id="add_id_connection"' not in html and 'id="delete_id_connection"' not in html
    response = client.post(add_url, {
        "connection": conn.pk, "to": "Bob <bob@example.test>\ncarol@example.test", "cc": "", "bcc": "",
        "reply_to": "", "from_address": "", "subject": "Grüße", "text_body": "Hallo", "html_body": "",
        "priority": "0", "send_after_0": "", "send_after_1": "",
        "attachments": [SimpleUploadedFile("a.pdf", b"%PDF-1\x00\xff", "application/pdf"),
                        SimpleUploadedFile("b.txt", b"hello", "text/plain")],
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    message = OutboxMessage.objects.get()
    assert message.tenant_id == conn.tenant_id and message.status == OutboxStatus.QUEUED
    assert message.envelope_to == ["bob@example.test", "carol@example.test"]
    parsed = message_from_bytes(bytes(message.mime), policy=policy.default)
    assert parsed["Subject"] == "Grüße"
    assert [(a.get_filename(), a.get_content()) for a in parsed.iter_attachments()] == [
        ("a.pdf", b"%PDF-1\x00\xff"), ("b.txt", "hello")]
    # the record page is read-only and shows the delivery section
    page = client.get(reverse("admin:connections_outboxmessage_change", args=[message.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "Delivery" in body and "bob@example.test" in body and "a.pdf" in body
    assert 'name="_save"' not in body


def test_compose_errors_are_shown_on_the_form_and_nothing_is_stored(client, operator, make_connection):
    conn = make_connection()
    client.force_login(operator)
    response = client.post(reverse("admin:connections_outboxmessage_add"), {
        "connection": conn.pk, "to": "not an address", "subject": "Hi\r\nBcc: x@example.test",
        "text_body": "x", "priority": "0",
    })
    assert response.status_code == 200
    assert "is not a valid e-mail address" in response.content.decode()
    assert not OutboxMessage.objects.exists()


def test_viewer_cannot_compose_or_run_actions(client, viewer, make_connection):
    conn = make_connection()
    msg = enqueue.enqueue(connection_id=conn.pk, to=["a@example.test"], subject="s", dispatch=False)
    client.force_login(viewer)
    assert client.get(reverse("admin:connections_outboxmessage_add")).status_code == 403
    changelist = client.get(reverse("admin:connections_outboxmessage_changelist"))
    assert changelist.status_code == 200
    assert "requeue" not in changelist.content.decode()
    client.post(reverse("admin:connections_outboxmessage_changelist"),
                {"action": "cancel", "_selected_action": [msg.pk]})
    assert OutboxMessage.objects.get(pk=msg.pk).status == OutboxStatus.QUEUED


def test_requeue_and_cancel_actions(client, operator, make_connection):
    conn = make_connection()
    failed, queued, stale = (enqueue.enqueue(connection_id=conn.pk, to=["a@example.test"], subject="s",
                                             dispatch=False) for _ in range(3))
    OutboxMessage.objects.filter(pk=failed.pk).update(status=OutboxStatus.FAILED, attempts=5)
    OutboxMessage.objects.filter(pk=stale.pk).update(status=OutboxStatus.SENDING,
                                                     claimed_at=timezone.now() - timedelta(hours=2))
    client.force_login(operator)
    url = reverse("admin:connections_outboxmessage_changelist")
    listing = client.get(url + "?flight=stale").content.decode()
    assert "(stale)" in listing
    client.post(url, {"action": "cancel", "_selected_action": [queued.pk]})
    assert OutboxMessage.objects.get(pk=queued.pk).status == OutboxStatus.CANCELLED
    response = client.post(url, {"action": "requeue", "_selected_action": [failed.pk, stale.pk]}, follow=True)
    assert "2 message(s) requeued" in response.content.decode()
    assert {m.status for m in OutboxMessage.objects.filter(pk__in=[failed.pk, stale.pk])} == {OutboxStatus.QUEUED}


def test_other_tenants_messages_are_invisible(client, operator, other_conn):
    theirs = enqueue.enqueue(connection_id=other_conn.pk, to=["a@example.test"], subject="secret-subject",
                             dispatch=False)
    client.force_login(operator)
    listing = client.get(reverse("admin:connections_outboxmessage_changelist")).content.decode()
    assert "secret-subject" not in listing
    assert client.get(reverse("admin:connections_outboxmessage_change", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("admin:connections_outboxmessage_source", args=[theirs.pk])).status_code == 404
    client.post(reverse("admin:connections_outboxmessage_changelist"),
                {"action": "cancel", "_selected_action": [theirs.pk]})
    assert OutboxMessage.objects.get(pk=theirs.pk).status == OutboxStatus.QUEUED


def test_source_download_is_the_wire_message(client, operator, make_connection):
    conn = make_connection()
    msg = enqueue.enqueue(connection_id=conn.pk, to=["a@example.test"], subject="s", text="x", dispatch=False)
    client.force_login(operator)
    response = client.get(reverse("admin:connections_outboxmessage_source", args=[msg.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "message/rfc822"
    assert response.content == bytes(msg.mime)


def test_send_test_mail_action_asks_for_a_recipient_then_queues(client, operator, make_connection):
    conn = make_connection()
    client.force_login(operator)
    url = reverse("admin:connections_outboundconnection_changelist")
    ask = client.post(url, {"action": "send_test_mail", "_selected_action": [conn.pk]})
    assert ask.status_code == 200 and 'name="recipient"' in ask.content.decode()
    bad = client.post(url, {"action": "send_test_mail", "_selected_action": [conn.pk], "apply": "1",
                            "recipient": "nope"})
    assert "not a valid e-mail address" in bad.content.decode() and not OutboxMessage.objects.exists()
    done = client.post(url, {"action": "send_test_mail", "_selected_action": [conn.pk], "apply": "1",
                             "recipient": "ops@example.test"}, follow=True)
    assert "Test mail to ops@example.test queued on '" in done.content.decode()
    msg = OutboxMessage.objects.get()
    assert msg.connection_id == conn.pk and msg.envelope_to == ["ops@example.test"]
    assert msg.subject.startswith("TenantMail test message")


def test_send_test_mail_skips_a_disabled_connection_and_says_so(client, operator, make_connection):
    on, off = make_connection(name="on"), make_connection(name="off", enabled=False)
    client.force_login(operator)
    url = reverse("admin:connections_outboundconnection_changelist")
    done = client.post(url, {"action": "send_test_mail", "_selected_action": [on.pk, off.pk], "apply": "1",
                             "recipient": "ops@example.test"}, follow=True)
    page = done.content.decode().lower()  # the admin capitalises messages
    assert "test mail not queued on &#x27;off&#x27;: the connection is disabled; enable it first." in page
    assert "test mail to ops@example.test queued on 'on'" in page
    assert list(OutboxMessage.objects.values_list("connection_id", flat=True)) == [on.pk]


def test_connection_form_checks_default_from(client, django_user_model, tenant):
    admin_user = django_user_model.objects.create_superuser("root", "root@example.test", "pw")
    client.force_login(admin_user)
    response = client.post(reverse("admin:connections_outboundconnection_add"), {
        "tenant": tenant.pk, "name": "smtp-x", "enabled": "on", "host": "smtp.example.test", "port": "",
        "protection": "ssl_tls", "timeout": "30", "verify_certificate": "on", "trusted_ca": "",
        "authentication": "plain", "credential_name": "c", "default_from": "Bad\r\nBcc: x@example.test",
        "default_reply_to": "", "max_per_session": "100", "rate_limit_per_minute": "",
    })
    assert response.status_code == 200
    assert "line break" in response.content.decode() or "not a valid" in response.content.decode()


def test_connection_change_page_has_checklist_connectivity_and_outbox_counts(client, django_user_model,
                                                                            make_connection):
    conn = make_connection()
    enqueue.enqueue(connection_id=conn.pk, to=["a@example.test"], subject="s", dispatch=False)
    admin_user = django_user_model.objects.create_superuser("root2", "root@example.test", "pw")
    client.force_login(admin_user)
    page = client.get(reverse("admin:connections_outboundconnection_change", args=[conn.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="setup-checklist"' in html
    assert "Queued: 1" in html
    listing = client.get(reverse("admin:connections_outboundconnection_changelist")).content.decode()
    assert "send_test_mail" in listing and "test_connection_action" in listing
    assert "1 queued" in listing


@pytest.mark.django_db(transaction=True)  # send_due runs outside a transaction, as in a worker
def test_record_links_a_follow_up(client, operator, make_connection, fault):
    conn = make_connection(port=fault.port)
    msg = enqueue.enqueue(connection_id=conn.pk, to=["ok@example.test", "rcpt452-x@example.test"], subject="s",
                          dispatch=False)
    sending.send_due(connection_id=conn.pk)
    follow = OutboxMessage.objects.get(retry_of=msg)
    client.force_login(operator)
    html = client.get(reverse("admin:connections_outboxmessage_change", args=[msg.pk])).content.decode()
    assert f"follow-up <a href=\"{reverse('admin:connections_outboxmessage_change', args=[follow.pk])}\">" in html
    assert "refused 452" in html and "Too many recipients" in html
    html = client.get(reverse("admin:connections_outboxmessage_change", args=[follow.pk])).content.decode()
    assert f"retries recipients of <a" in html


def test_deleting_a_connection_with_messages_is_refused_in_the_admin(client, django_user_model, make_connection):
    conn = make_connection()
    enqueue.enqueue(connection_id=conn.pk, to=["a@example.test"], subject="kept", dispatch=False)
    admin_user = django_user_model.objects.create_superuser("root3", "root@example.test", "pw")
    client.force_login(admin_user)
    url = reverse("admin:connections_outboundconnection_delete", args=[conn.pk])
    page = client.get(url)
    assert page.status_code == 200 and "would require deleting the following protected" in page.content.decode()
    client.post(url, {"post": "yes"})
    assert OutboxMessage.objects.filter(subject="kept").exists()


def test_connection_list_queries_do_not_grow_with_the_rows(client, django_user_model, make_connection):
    from django.db import connection as db
    from django.test.utils import CaptureQueriesContext

    admin_user = django_user_model.objects.create_superuser("root4", "root@example.test", "pw")
    client.force_login(admin_user)
    url = reverse("admin:connections_outboundconnection_changelist")

    def queries_for_page() -> int:
        client.get(url)  # warm caches
        with CaptureQueriesContext(db) as captured:
            html = client.get(url).content.decode()
        return len(captured), html

    for _ in range(2):
        conn = make_connection()
        enqueue.enqueue(connection_id=conn.pk, to=["a@example.test"], subject="s", dispatch=False)
    few, _ = queries_for_page()
    for _ in range(6):
        conn = make_connection()
        enqueue.enqueue(connection_id=conn.pk, to=["a@example.test"], subject="s", dispatch=False)
    many, html = queries_for_page()
    assert html.count("1 queued") == 8
    assert many == few


def test_a_message_being_sent_cannot_be_deleted(client, django_user_model, make_connection):
    conn = make_connection()
    done, flying = (enqueue.enqueue(connection_id=conn.pk, to=["a@example.test"], subject="s", dispatch=False)
                    for _ in range(2))
    OutboxMessage.objects.filter(pk=done.pk).update(status=OutboxStatus.SENT)
    OutboxMessage.objects.filter(pk=flying.pk).update(status=OutboxStatus.SENDING, claimed_at=timezone.now())
    admin_user = django_user_model.objects.create_superuser("root5", "root@example.test", "pw")
    client.force_login(admin_user)
    url = reverse("admin:connections_outboxmessage_changelist")
    both = client.post(url, {"action": "delete_selected", "_selected_action": [done.pk, flying.pk], "post": "yes"})
    assert both.status_code == 403 and OutboxMessage.objects.count() == 2  # nothing deleted
    assert client.get(reverse("admin:connections_outboxmessage_delete", args=[flying.pk])).status_code == 403
    client.post(url, {"action": "delete_selected", "_selected_action": [done.pk], "post": "yes"})
    assert list(OutboxMessage.objects.values_list("pk", flat=True)) == [flying.pk]


@pytest.mark.django_db(transaction=True)  # send_due runs outside a transaction, as in a worker
def test_uncertain_messages_are_shown_and_the_operator_resends_or_marks_them_sent(client, operator, make_connection,
                                                                                  fault, no_worker_kicks):
    conn = make_connection(port=fault.port, timeout=2)
    lost, confirmed, fine = (enqueue.enqueue(connection_id=conn.pk, to=[to], subject=to, dispatch=False, text="x")
                             for to in ("drop-a@example.test", "drop-b@example.test", "ok@example.test"))
    for msg in (lost, confirmed, fine):  # one session each: a drop ends its session
        sending.send_due(connection_id=conn.pk, message_ids=[msg.pk])
    client.force_login(operator)
    url = reverse("admin:connections_outboxmessage_changelist")
    listing = client.get(url + "?status__exact=uncertain").content.decode()
    assert listing.count("(may have been delivered)") == 2
    record = client.get(reverse("admin:connections_outboxmessage_change", args=[fine.pk])).content.decode()
    # per recipient: what the server said to RCPT TO, its final reply and the queue id
    assert "2.1.5 OK" in record and "queued as FAULT" in record and "<th>queue id</th>" in record
    record = client.get(reverse("admin:connections_outboxmessage_change", args=[lost.pk])).content.decode()
    assert "after the data, before the reply: may have been delivered" in record

    response = client.post(url, {"action": "resend_uncertain", "_selected_action": [lost.pk, fine.pk]}, follow=True)
    text = response.content.decode()
    assert "1 message(s) queued to be sent again" in text and "1 message(s) left as they are" in text
    response = client.post(url, {"action": "mark_sent", "_selected_action": [confirmed.pk]}, follow=True)
    assert "1 message(s) marked sent" in response.content.decode()
    got = {m.pk: m for m in OutboxMessage.objects.filter(pk__in=[lost.pk, confirmed.pk])}
    assert got[lost.pk].status == OutboxStatus.QUEUED and got[confirmed.pk].status == OutboxStatus.SENT
    assert got[confirmed.pk].delivery_log[-1]["detail"] == "uncertain message marked sent by operator"


def test_a_viewer_cannot_resend_uncertain_messages(client, viewer, make_connection):
    conn = make_connection()
    msg = enqueue.enqueue(connection_id=conn.pk, to=["a@example.test"], subject="s", dispatch=False)
    OutboxMessage.objects.filter(pk=msg.pk).update(status=OutboxStatus.UNCERTAIN)
    client.force_login(viewer)
    client.post(reverse("admin:connections_outboxmessage_changelist"),
                {"action": "resend_uncertain", "_selected_action": [msg.pk]})
    assert OutboxMessage.objects.get(pk=msg.pk).status == OutboxStatus.UNCERTAIN


def test_operator_of_a_tenant_edits_its_message_templates_and_broken_ones_are_refused(client, django_user_model,
                                                                                      tenant):
    from connections.models import OutboxTemplate

    admin_user = django_user_model.objects.create_user("tpl-admin", password="pw", is_staff=True)
    Membership.objects.create(user=admin_user, tenant=tenant, role="admin")
    client.force_login(admin_user)
    url = reverse("admin:connections_outboxtemplate_add")
    response = client.post(url, {"tenant": tenant.pk, "name": "broken", "subject": "{% if %}"})
    assert response.status_code == 200 and "Template &#x27;broken&#x27;, subject" in response.content.decode()
    response = client.post(url, {"tenant": tenant.pk, "name": "invoice", "subject": "Invoice {{ n }}",
                                 "text_body": "Pay {{ amount }}"})
    assert response.status_code == 302
    assert OutboxTemplate.objects.get().name == "invoice"
