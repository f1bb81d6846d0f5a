"""The connection lists' actions and buttons, per role (issue 7): viewers run none; operators
and admins run Test connection, Poll now, Send test mail, Send due messages now, Enable and
Disable. Work goes to Celery (on commit); only the connectivity test talks to a server in
the request, under its timeout. Also: the list columns and their order."""
from __future__ import annotations

import html
import re
import socket

import pytest
from django.contrib.auth import get_user_model

from connections.models import InboundConnection, Membership, OutboundConnection, OutboxMessage

from . import factories as f

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tenantmail.urls")]

IN_LIST = "/admin/connections/inboundconnection/"
OUT_LIST = "/admin/connections/outboundconnection/"


def closed_port() -> int:
    """A loopback port nobody listens on: the connectivity test fails at once, for real."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def acme():
    t = f.tenant("acme")
    f.credential(t)
    return t


def login(client, tenant, role: str):
    user = get_user_model().objects.create_user(role, f"{role}@example.com", "pw", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=role)
    client.force_login(user)
    return user


def run(client, url: str, action: str, objs, **extra):
    data = {"action": action, "_selected_action": [o.pk for o in objs], **extra}
    response = client.post(url, data, follow=True)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def offered(client, url: str) -> set[str]:
    return set(re.findall(r'<option value="(\w+)">', client.get(url).content.decode()))


RUN_ACTIONS_IN = {"test_connection_action", "poll_now_action", "enable_connections", "disable_connections"}
RUN_ACTIONS_OUT = {"test_connection_action", "send_test_mail", "send_due_now", "enable_connections",
                   "disable_connections"}


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_operators_and_admins_are_offered_every_action(client, acme, role):
    f.inbound(acme)
    f.outbound(acme)
    login(client, acme, role)
    assert RUN_ACTIONS_IN <= offered(client, IN_LIST)
    assert RUN_ACTIONS_OUT <= offered(client, OUT_LIST)


def test_viewers_are_offered_no_action_and_cannot_post_one(client, acme, django_capture_on_commit_callbacks):
    conn = f.inbound(acme, enabled=True, host="127.0.0.1", port=closed_port(), protection="off",
                     authentication="none", last_test_at=None, last_test_ok=None)
    out = f.outbound(acme, enabled=True)
    login(client, acme, "viewer")
    assert not (RUN_ACTIONS_IN & offered(client, IN_LIST))
    assert not (RUN_ACTIONS_OUT & offered(client, OUT_LIST))
    with django_capture_on_commit_callbacks() as callbacks:
        for action in RUN_ACTIONS_IN:
            run(client, IN_LIST, action, [conn])
        for action in RUN_ACTIONS_OUT:
            run(client, OUT_LIST, action, [out], apply="1", recipient="ops@example.test")
    assert callbacks == []  # nothing queued
    conn.refresh_from_db(), out.refresh_from_db()
    assert conn.enabled and out.enabled and conn.last_test_at is None
    assert not OutboxMessage.objects.exists()
    # The change-page buttons refuse too.
    assert client.post(f"{IN_LIST}{conn.pk}/test/").status_code == 403
    assert client.post(f"{IN_LIST}{conn.pk}/poll/").status_code == 403
    assert client.get(f"{OUT_LIST}{out.pk}/send-test-mail/").status_code == 403
    assert client.post(f"{OUT_LIST}{out.pk}/send-test-mail/", {"recipient": "a@b.example"}).status_code == 403
    page = client.get(f"{OUT_LIST}{out.pk}/change/").content.decode()
    assert "send-test-mail/" not in page and "tm-connectivity-test" not in page


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_test_connection_runs_in_the_request_under_its_timeout(client, acme, role):
    conn = f.inbound(acme, "in-closed", host="127.0.0.1", port=closed_port(), protection="off",
                     authentication="none", timeout=3, last_test_at=None, last_test_ok=None)
    login(client, acme, role)
    page = run(client, IN_LIST, "test_connection_action", [conn])
    conn.refresh_from_db()
    assert conn.last_test_at is not None and conn.last_test_ok is False
    assert "Connection 'in-closed': test FAILED" in page


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_poll_now_queues_on_commit_and_reports(client, acme, role, django_capture_on_commit_callbacks):
    a, b = f.inbound(acme, "in-a"), f.inbound(acme, "in-b")
    login(client, acme, role)
    with django_capture_on_commit_callbacks() as callbacks:
        page = run(client, IN_LIST, "poll_now_action", [a, b])
    assert len(callbacks) == 2 and "2 poll(s) queued." in page
    with django_capture_on_commit_callbacks() as callbacks:
        client.post(f"{IN_LIST}{a.pk}/poll/")
    assert len(callbacks) == 1


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_send_test_mail_from_the_list_and_from_the_change_page(client, acme, role):
    out = f.outbound(acme, "smtp-main")
    login(client, acme, role)
    page = run(client, OUT_LIST, "send_test_mail", [out], apply="1", recipient="ops@example.test")
    # Fixed first word: Django capitalises a message's first letter ("Smtp-main: …" before).
    assert "Test mail to ops@example.test queued on 'smtp-main' as <a href=" in page
    assert OutboxMessage.objects.filter(connection=out).count() == 1

    change = client.get(f"{OUT_LIST}{out.pk}/change/").content.decode()
    assert f'href="{OUT_LIST}{out.pk}/send-test-mail/"' in change and "tm-connectivity-test" in change
    form = client.get(f"{OUT_LIST}{out.pk}/send-test-mail/").content.decode()
    assert 'name="recipient"' in form and 'name="action"' not in form
    bad = client.post(f"{OUT_LIST}{out.pk}/send-test-mail/", {"recipient": "nope"})
    assert bad.status_code == 200 and OutboxMessage.objects.count() == 1
    done = client.post(f"{OUT_LIST}{out.pk}/send-test-mail/", {"recipient": "ops@example.test"}, follow=True)
    assert done.redirect_chain[-1][0] == f"{OUT_LIST}{out.pk}/change/"
    assert OutboxMessage.objects.filter(connection=out).count() == 2


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_send_due_now(client, acme, role):
    out = f.outbound(acme, "smtp-main")
    login(client, acme, role)
    page = run(client, OUT_LIST, "send_due_now", [out])
    assert "1 connection(s)" in page


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_enable_and_disable(client, acme, role, django_capture_on_commit_callbacks):
    on = f.inbound(acme, "in-on")
    off = f.inbound(acme, "in-off", enabled=False)
    out = f.outbound(acme, "out-off", enabled=False)
    login(client, acme, role)
    page = run(client, IN_LIST, "disable_connections", [on, off])
    assert "Disabled: in-on." in page and "Already disabled: in-off." in page
    on.refresh_from_db()
    assert not on.enabled and on.next_poll_at is None
    page = run(client, IN_LIST, "enable_connections", [on, off])
    assert "Enabled: in-off, in-on. Next polls are scheduled." in page
    for c in (on, off):
        c.refresh_from_db()
        assert c.enabled and c.next_poll_at is not None  # scheduled at once
    with django_capture_on_commit_callbacks() as callbacks:  # the outbox is kicked after the commit
        page = run(client, OUT_LIST, "enable_connections", [out])
    out.refresh_from_db()
    assert out.enabled and "Enabled: out-off. Queued messages will be sent." in page and len(callbacks) == 1
    run(client, OUT_LIST, "disable_connections", [out])
    out.refresh_from_db()
    assert not out.enabled


def test_actions_skip_connections_of_tenants_where_the_role_is_viewer(client, acme):
    other = f.tenant("globex")
    mine, theirs = f.inbound(acme, "mine"), f.inbound(other, "theirs")
    user = login(client, acme, "operator")
    Membership.objects.create(user=user, tenant=other, role="viewer")
    page = run(client, IN_LIST, "disable_connections", [mine, theirs])
    assert "1 selected object(s) skipped" in page
    assert not InboundConnection.objects.get(pk=mine.pk).enabled
    assert InboundConnection.objects.get(pk=theirs.pk).enabled


def test_list_columns_name_readiness_last_test_first_last_error_last(client, acme):
    conn = f.inbound(acme, "in-bad", last_poll_ok=False, last_error="IMAP login refused: AUTHENTICATIONFAILED")
    f.outbound(acme, "out-bad", last_test_ok=False, last_test_summary="SMTP 127.0.0.1:1: connection refused")
    login(client, acme, "viewer")
    for url, name, error in ((IN_LIST, "in-bad", "Poll: IMAP login refused"),
                             (OUT_LIST, "out-bad", "Test: SMTP 127.0.0.1:1: connection refused")):
        page = client.get(url).content.decode()
        heads = re.findall(r'<th scope="col"[^>]*class="[^"]*column-(\w+)', page)
        assert heads[:3] == ["name", "readiness", "last_test"], heads
        assert heads[-1] == "last_error_text", heads
        assert error in html.unescape(page), url
    assert conn.pk
    page = client.get(IN_LIST).content.decode()
    assert "column-next_poll" in page and "column-poll_state" not in page


def test_outbound_last_error_shows_the_newest_failed_message(client, acme):
    out = f.outbound(acme, "smtp-main")
    OutboxMessage.objects.create(tenant=acme, connection=out, from_address="a@acme.example", to=["x@y.example"],
                                 status="failed", last_error="550 5.1.1 mailbox unknown")
    login(client, acme, "viewer")
    assert "Send: 550 5.1.1 mailbox unknown" in html.unescape(client.get(OUT_LIST).content.decode())


def test_search_and_filters(client, acme):
    other = f.tenant("globex")
    f.inbound(acme, "orders-in")
    f.inbound(other, "billing-in", protocol="pop3", post_processing="delete", enabled=False)
    f.outbound(acme, "smtp-main")
    f.outbound(other, "globex-smtp")
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    page = client.get(IN_LIST).content.decode()
    for param in ("tenant__id__exact", "protocol__exact", "readiness=", "enabled__exact"):
        assert param in page, param  # the four filters the issue names
    assert "column-tenant" in page  # two tenants visible: the tenant column is shown
    assert "billing-in" in client.get(IN_LIST + "?q=billing").content.decode()
    assert "orders-in" not in client.get(IN_LIST + "?q=billing").content.decode()
    assert "orders-in" not in client.get(IN_LIST + "?protocol__exact=pop3").content.decode()
    assert "billing-in" not in client.get(IN_LIST + "?enabled__exact=1").content.decode()
    assert "orders-in" not in client.get(IN_LIST + f"?tenant__id__exact={other.pk}").content.decode()
    page = client.get(OUT_LIST).content.decode()
    for param in ("tenant__id__exact", "readiness=", "enabled__exact"):
        assert param in page, param
    assert "smtp-main" in client.get(OUT_LIST + "?q=smtp").content.decode()


def test_one_tenant_user_sees_no_tenant_column(client, acme):
    f.inbound(acme)
    login(client, acme, "viewer")
    assert "column-tenant" not in client.get(IN_LIST).content.decode()
