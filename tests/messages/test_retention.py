"""Retention against real files and a real IMAP mailbox: purge, then poll again — nothing
is fetched twice; the purge command's report; the outbox's keep_sent_days; erasing one
message from the admin (admin role, reason, admin log)."""
from __future__ import annotations

import io
import json
import os
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from connections.models import (
    Attachment, Membership, OutboundConnection, OutboxMessage, OutboxStatus, Role, StoredMessage,
)
from connections.services.inbound.poll import poll
from connections.services.messages import retention
from connections.services.outbound import enqueue
from connections.services.outbound.mime import AttachmentIn
from tests.inbound.conftest import make_credential, make_inbound, tenant  # noqa: F401 (fixtures)
from tests.webhooks.conftest import polled  # noqa: F401 (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]


def _age(conn, days: int) -> None:
    StoredMessage.objects.filter(connection=conn).update(fetched_at=timezone.now() - timedelta(days=days))


def test_purge_frees_files_and_nothing_is_fetched_again(polled, mail_servers):
    conn, address = polled(4, keep_days=30)
    first = poll(connection_id=conn.pk, trigger="manual")
    assert first.stored == 4
    rows = list(StoredMessage.objects.filter(connection=conn).order_by("id"))
    files = [m.raw.name for m in rows] + list(Attachment.objects.filter(message__connection=conn)
                                              .values_list("file", flat=True))
    assert len(files) == 8 and all(default_storage.exists(n) for n in files)
    expected = sum(default_storage.size(n) for n in files) + sum(len(m.text_body) + len(m.html_body) for m in rows)
    _age(conn, 31)
    StoredMessage.objects.filter(pk=rows[0].pk).update(fetched_at=timezone.now() - timedelta(days=5))  # young

    dry = retention.purge(dry_run=True)
    assert (dry.messages, dry.attachments) == (3, 3) and all(default_storage.exists(n) for n in files)
    result = retention.purge()
    assert (result.messages, result.attachments) == (3, 3)
    young_files = {rows[0].raw.name, *Attachment.objects.filter(message=rows[0]).values_list("file", flat=True)}
    assert result.bytes == expected - sum(default_storage.size(n) for n in young_files) - len(rows[0].text_body)
    for name in files:
        assert default_storage.exists(name) == (name in young_files), name
    purged = StoredMessage.objects.filter(connection=conn, purged_at__isnull=False)
    assert purged.count() == 3
    assert all(m.text_body == "" and not m.raw and m.subject.startswith("Order") for m in purged)
    assert not Attachment.objects.filter(message__in=purged).exists()
    assert retention.purge().messages == 0  # idempotent
    _pages_of_a_purged_message(purged.first())

    # The mails are still on the server (keep): a new poll stores nothing new.
    assert len(mail_servers.server_copies(address)) == 4
    again = poll(connection_id=conn.pk, trigger="manual")
    assert again.stored == 0 and again.outcome == "success", again.summary()
    assert StoredMessage.objects.filter(connection=conn).count() == 4


def test_purge_command_reports_and_filters(polled):
    conn, _ = polled(2)  # no keep_days: only --older-than-days purges it
    poll(connection_id=conn.pk, trigger="manual")
    _age(conn, 10)
    out = io.StringIO()
    call_command("purge_messages", stdout=out)
    assert "No connection has a retention period" in out.getvalue()
    out = io.StringIO()
    call_command("purge_messages", "--tenant", conn.tenant.slug, "--connection", conn.name,
                 "--older-than-days", "7", "--dry-run", stdout=out)
    assert "Would remove 2 message(s) and 2 attachment(s)" in out.getvalue()
    assert not StoredMessage.objects.filter(purged_at__isnull=False).exists()
    out = io.StringIO()
    call_command("purge_messages", "--older-than-days", "11", "--json", stdout=out)
    assert json.loads(out.getvalue())["messages"] == 0
    out = io.StringIO()
    call_command("purge_messages", "--connection", conn.name, "--older-than-days", "7", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["messages"] == 2 and report["bytes"] > 0 and not report["dry_run"]
    with pytest.raises(CommandError, match="No connection named"):
        call_command("purge_messages", "--connection", "nope", stdout=io.StringIO())


def test_keep_sent_days_deletes_finished_outbox_messages(tenant):
    conn = OutboundConnection.objects.create(tenant=tenant, name="notifications", host="smtp.example.test",
                                             default_from="noreply@acme.example", keep_sent_days=30, enabled=False)
    old = enqueue.enqueue(connection_id=conn.pk, to=["a@example.test"], subject="old", text="x",
                          attachments=[AttachmentIn("a.txt", b"12345", "text/plain")])
    queued = enqueue.enqueue(connection_id=conn.pk, to=["a@example.test"], subject="queued", text="x")
    recent = enqueue.enqueue(connection_id=conn.pk, to=["a@example.test"], subject="recent", text="x")
    long_ago = timezone.now() - timedelta(days=40)
    OutboxMessage.objects.filter(pk=old.pk).update(status=OutboxStatus.SENT, sent_at=long_ago)
    OutboxMessage.objects.filter(pk=queued.pk).update(created_at=long_ago)  # not finished: kept
    OutboxMessage.objects.filter(pk=recent.pk).update(status=OutboxStatus.SENT, sent_at=timezone.now())
    attachment = old.attachments.get().file.name
    assert default_storage.exists(attachment)
    result = retention.purge()
    assert result.messages == 1 and result.attachments == 1 and result.bytes >= 5
    assert set(OutboxMessage.objects.values_list("subject", flat=True)) == {"queued", "recent"}
    assert not default_storage.exists(attachment)


def test_erase_from_the_admin(polled, client, django_user_model):
    conn, _ = polled(1)
    poll(connection_id=conn.pk, trigger="manual")
    message = StoredMessage.objects.get(connection=conn)
    raw_path = message.raw.path
    operator = django_user_model.objects.create_user("op", password="pw-op-12345", is_staff=True)
    admin = django_user_model.objects.create_user("adm", password="pw-adm-12345", is_staff=True)
    Membership.objects.create(user=operator, tenant=conn.tenant, role=Role.OPERATOR)
    Membership.objects.create(user=admin, tenant=conn.tenant, role=Role.ADMIN)
    url = "/admin/connections/storedmessage/"
    form = {"action": "erase_messages", "_selected_action": [message.pk]}

    client.force_login(operator)
    page = client.get(url)
    assert b"erase_messages" not in page.content  # the action needs the admin role
    client.force_login(admin)
    confirm = client.post(url, form)
    assert confirm.status_code == 200 and b"Reason (written to the admin log)" in confirm.content
    missing = client.post(url, {**form, "confirm_erase": "1", "erase_reason": " "})
    assert b"Give the reason" in missing.content
    assert StoredMessage.objects.get(pk=message.pk).purged_at is None
    done = client.post(url, {**form, "confirm_erase": "1", "erase_reason": "GDPR request #42"})
    assert done.status_code == 302
    erased = StoredMessage.objects.get(pk=message.pk)
    assert erased.purged_at and erased.subject == "" and erased.from_header == "" and erased.text_body == ""
    assert erased.server_key and not erased.raw and not os.path.exists(raw_path)
    assert not Attachment.objects.filter(message=erased).exists()
    entry = LogEntry.objects.get(object_id=str(message.pk))
    assert entry.user == admin and "GDPR request #42" in entry.change_message
    assert "Order" not in entry.object_repr


def _pages_of_a_purged_message(message) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    reader = get_user_model().objects.create_superuser("reader", "r@example.test", "pw-reader-123")
    client = Client()
    client.force_login(reader)
    assert client.get(f"/messages/{message.pk}/").status_code == 200
    assert client.get(f"/messages/{message.pk}/source/").status_code == 404
    assert client.get(f"/messages/{message.pk}/raw.eml").status_code == 404
