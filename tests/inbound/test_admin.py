"""The inbound admin: warnings, next run, history, Poll now, read-only history and messages, scoping."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from connections.models import InboundConnection, Membership, PollOutcome, PollRun, Role, StoredMessage, Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def conn(tenant, make_credential) -> InboundConnection:
    return InboundConnection.objects.create(
        tenant=tenant, name="support", host="imap.example.test", credential_name=make_credential(),
        selection="all", post_processing="mark_read", next_poll_at=timezone.now() + timedelta(minutes=3),
        consecutive_failures=2, backoff_until=timezone.now() + timedelta(minutes=2), last_error="Login failed.",
    )


def _user(django_user_model, tenant, role: str | None, *, superuser: bool = False):
    user = django_user_model.objects.create_user(f"u-{uuid.uuid4().hex[:6]}", password="pw", is_staff=True,
                                                 is_superuser=superuser)
    if role:
        Membership.objects.create(user=user, tenant=tenant, role=role)
    return user


def test_change_page_shows_warnings_next_run_backoff_and_history(client, django_user_model, tenant, conn):
    PollRun.objects.create(tenant=tenant, connection=conn, started_at=timezone.now(), outcome=PollOutcome.FAILED,
                           error="Login failed.", duration_ms=12)
    client.force_login(_user(django_user_model, tenant, Role.OPERATOR))
    page = client.get(reverse("admin:connections_inboundconnection_change", args=[conn.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "re-processes mail on every poll" in html
    assert "Backing off until" in html and "2 consecutive failed" in html
    assert "tm-poll-history" in html and "Login failed." in html
    assert "Poll now" in html and reverse("admin:connections_inboundconnection_poll", args=[conn.pk]) in html
    listing = client.get(reverse("admin:connections_inboundconnection_changelist"))
    assert listing.status_code == 200 and "every 5 minutes (UTC)" in listing.content.decode()


def test_poll_now_needs_operator_and_post(client, django_user_model, tenant, conn):
    url = reverse("admin:connections_inboundconnection_poll", args=[conn.pk])
    client.force_login(_user(django_user_model, tenant, Role.VIEWER))
    assert client.post(url).status_code == 403
    page = client.get(reverse("admin:connections_inboundconnection_change", args=[conn.pk]))
    assert "tm-poll-now" not in page.content.decode()
    client.force_login(_user(django_user_model, tenant, Role.OPERATOR))
    assert client.get(url).status_code == 405
    response = client.post(url, follow=True)
    assert response.status_code == 200 and "queued" in response.content.decode()


def test_other_tenants_connection_is_404(client, django_user_model, conn):
    other = Tenant.objects.create(name="Other", slug=f"o-{uuid.uuid4().hex[:6]}")
    client.force_login(_user(django_user_model, other, Role.ADMIN))
    assert client.get(reverse("admin:connections_inboundconnection_change", args=[conn.pk])).status_code == 404
    assert client.post(reverse("admin:connections_inboundconnection_poll", args=[conn.pk])).status_code == 404


def test_add_form_validates_and_schedules(client, django_user_model, tenant, make_credential):
    client.force_login(_user(django_user_model, tenant, None, superuser=True))
    url = reverse("admin:connections_inboundconnection_add")
    base = {
        "tenant": tenant.pk, "name": "new-in", "enabled": "on", "protocol": "pop3", "host": "pop.example.test",
        "protection": "ssl_tls", "timeout": 30, "verify_certificate": "on", "authentication": "plain",
        "credential_name": make_credential(), "folder": "INBOX", "selection": "unread", "max_messages": 100,
        "max_message_size": 10_000_000, "post_processing": "mark_read", "archive_folder": "",
        "schedule_kind": "cron", "schedule_every": 300, "schedule_weekdays": "0,1,2,3,4", "schedule_start_hour": 0,
        "schedule_end_hour": 24, "schedule_cron": "not cron", "timezone": "Europe/Berlin", "lock_timeout": 1800,
    }
    bad = client.post(url, base)
    assert bad.status_code == 200
    text = bad.content.decode()
    assert "POP3 can only delete mails or keep them" in text
    assert "not a valid cron expression" in text
    good = client.post(url, {**base, "post_processing": "delete", "schedule_cron": "*/10 * * * *"})
    assert good.status_code == 302, good.content.decode()[:3000]
    created = InboundConnection.objects.get(name="new-in")
    assert created.next_poll_at is not None
    assert created.next_poll_at - timezone.now() <= timedelta(minutes=10, seconds=5)


def test_history_and_messages_are_read_only(client, django_user_model, tenant, conn):
    run = PollRun.objects.create(tenant=tenant, connection=conn, started_at=timezone.now(), outcome=PollOutcome.SUCCESS)
    msg = StoredMessage.objects.create(tenant=tenant, connection=conn, server_key="imap:1:1", uidvalidity=1, uid=1,
                                       fetched_at=timezone.now(), raw_sha256="0" * 64, subject="Hello",
                                       parse_problems=["x"], parsed=True)
    client.force_login(_user(django_user_model, tenant, Role.ADMIN))
    runs = client.get(reverse("admin:connections_pollrun_changelist") + "?outcome__exact=success")
    assert runs.status_code == 200 and str(conn) in runs.content.decode()
    assert client.get(reverse("admin:connections_pollrun_change", args=[run.pk])).status_code == 200
    assert client.get(reverse("admin:connections_pollrun_add")).status_code == 403
    assert client.get(reverse("admin:connections_storedmessage_changelist")).status_code == 200
    by_conn = client.get(reverse("admin:connections_pollrun_changelist") + f"?connection__id__exact={conn.pk}")
    assert by_conn.status_code == 200 and "1 poll run" in by_conn.content.decode().lower()
    msgs = client.get(reverse("admin:connections_storedmessage_changelist") + f"?connection__id__exact={conn.pk}")
    assert msgs.status_code == 200 and "Hello" in msgs.content.decode()
    detail = client.get(reverse("admin:connections_storedmessage_change", args=[msg.pk]))
    assert detail.status_code == 200 and "Hello" in detail.content.decode()
    assert client.post(reverse("admin:connections_storedmessage_delete", args=[msg.pk])).status_code == 403
