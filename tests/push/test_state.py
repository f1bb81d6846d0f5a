"""The push state shown to operators: admin connection page, checklist, check_setup --json."""
from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from connections.models import InboundConnection, PushLease, PushState, Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def push_conn(db):
    tenant = Tenant.objects.create(name="Acme", slug="acme-push")
    return InboundConnection.objects.create(tenant=tenant, name="orders", host="imap.acme.example",
                                            authentication="plain", credential_name="nope", push=True)


def test_admin_page_shows_connected_since_and_last_event(admin_client, push_conn):
    now = timezone.now()
    PushLease.objects.create(connection=push_conn, holder="host:1:abc", expires_at=now + timedelta(minutes=1),
                             state=PushState.IDLE, connected_since=now - timedelta(minutes=5),
                             last_event_at=now, last_event="* 3 EXISTS")
    page = admin_client.get(reverse("admin:connections_inboundconnection_change", args=[push_conn.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert "IDLE session connected since" in text and "* 3 EXISTS" in text and "run_idle host:1:abc" in text


@pytest.mark.smoke
def test_check_setup_json_has_the_push_state(push_conn):
    PushLease.objects.create(connection=push_conn, holder="", state=PushState.WAITING)
    out = io.StringIO()
    with pytest.raises(CommandError):  # the connection is Blocked (no credential): exit status 1
        call_command("check_setup", "--json", stdout=out)
    data = json.loads(out.getvalue())
    entry = next(c for c in data["connections"] if c["name"] == "orders")
    assert entry["push"]["state"] == "waiting" and entry["push"]["connected_since"] is None
    push_item = next(i for i in entry["items"] if i["key"] == "push")
    assert push_item["state"] == "warn" and "run_idle" in push_item["detail"]


@pytest.mark.smoke
def test_a_dead_holder_is_shown_as_stale(push_conn):
    from connections.services.push.state import describe, push_state

    PushLease.objects.create(connection=push_conn, holder="host:9:dead", state=PushState.IDLE,
                             expires_at=timezone.now() - timedelta(seconds=1), connected_since=timezone.now())
    push_conn.refresh_from_db()
    assert push_state(push_conn)["state"] == "stale"
    assert "stopped renewing" in describe(push_conn)[1]


def test_which_events_poll():  # no database needed
    from connections.services.push.runner import wants_poll

    assert wants_poll("exists", "* 4 EXISTS", unread_only=False)
    assert wants_poll("fetch", "* 2 FETCH (FLAGS ())", unread_only=True)  # marked unread again
    assert not wants_poll("fetch", "* 2 FETCH (FLAGS (\\Seen))", unread_only=True)  # our own mark-read
    assert not wants_poll("fetch", "* 2 FETCH (FLAGS ())", unread_only=False)
    assert not wants_poll("expunge", "* 2 EXPUNGE", unread_only=True)
