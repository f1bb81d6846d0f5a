"""The admin's "Test connection" button, action, panel and column, and who may use them."""
from __future__ import annotations

import pytest
from django.contrib import admin as django_admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from connections.admin.connectivity import ConnectivityTestAdminMixin
from connections.models import InboundConnection, Membership, OutboundConnection, Role, Tenant

pytestmark = [pytest.mark.django_db, pytest.mark.mailservers]


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def users(tenant):
    User = get_user_model()
    other = Tenant.objects.create(name="Other", slug=f"{tenant.slug}-other")

    def member(name: str, t: Tenant, role: str):
        user = User.objects.create_user(name, password="login-pw-1", is_staff=True)
        Membership.objects.create(user=user, tenant=t, role=role)
        return user

    return {
        "superuser": User.objects.create_superuser("root", password="login-pw-1"),
        "admin": member("admin_a", tenant, Role.ADMIN),
        "operator": member("operator_a", tenant, Role.OPERATOR),
        "viewer": member("viewer_a", tenant, Role.VIEWER),
        "other_operator": member("operator_b", other, Role.OPERATOR),
    }


def client_for(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def admin_models() -> list[type]:
    """The connection models whose registered admin has the connectivity mixin."""
    out = [m for m in (InboundConnection, OutboundConnection)
           if isinstance(django_admin.site._registry.get(m), ConnectivityTestAdminMixin)]
    assert OutboundConnection in out  # the outbound admin must carry the button
    return out


def urls(conn) -> tuple[str, str]:
    name = conn._meta.model_name
    return (reverse(f"admin:connections_{name}_test", args=[conn.pk]),
            reverse(f"admin:connections_{name}_change", args=[conn.pk]))


def _make(make_connection, model, **kw):
    if model is OutboundConnection:
        return make_connection("smtp", "ssl_tls", "plain", **kw)
    return make_connection("imap", "ssl_tls", "plain", **kw)


@pytest.mark.parametrize("role", ["superuser", "admin", "operator"])
def test_button_runs_the_test_stores_and_reports(make_connection, users, role) -> None:
    for model in admin_models():
        conn = _make(make_connection, model)
        test_url, change_url = urls(conn)
        client = client_for(users[role])
        page = client.get(change_url).content.decode()
        assert test_url in page and "Test connection" in page and "Not tested yet." in page
        assert page.count("tm-connectivity-test") >= 2  # object tools + panel

        response = client.post(test_url, follow=True)
        assert response.redirect_chain[-1][0].endswith(change_url + "?tested=1#connectivity-test")
        shown = [str(m) for m in response.context["messages"]]
        assert any("test passed" in m for m in shown), shown
        conn.refresh_from_db()
        assert conn.last_test_ok is True
        page = response.content.decode()
        assert 'id="connectivity-test"' in page and "Passed" in page and 'data-step="auth"' in page
        assert "BEGIN CERTIFICATE" in page  # the chain, to trust it


def test_failed_test_message_has_step_and_hint_and_no_secret(make_connection, make_credential, users,
                                                             mail_servers) -> None:
    address, password = mail_servers.add_user()
    wrong = "Nicht-Das-<Passwort>-1"
    cred = make_credential(address, wrong)
    conn = make_connection("smtp", "starttls_mandatory", "plain", address=address,
                           password=password, credential_name=cred.name)
    test_url, change_url = urls(conn)
    response = client_for(users["operator"]).post(test_url, follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert any("FAILED at auth" in m and "hint:" in m and cred.name in m for m in shown), shown
    page = response.content.decode()
    assert wrong not in page and "Nicht-Das-&lt;Passwort&gt;-1" not in page
    assert "Failed" in page and 'data-ok="0"' in page
    listing = client_for(users["viewer"]).get(reverse("admin:connections_outboundconnection_changelist"))
    assert 'class="tm-last-test" data-ok="0"' in listing.content.decode()


def test_viewer_sees_the_result_but_cannot_run(make_connection, users) -> None:
    for model in admin_models():
        conn = _make(make_connection, model)
        test_url, change_url = urls(conn)
        viewer = client_for(users["viewer"])
        page = viewer.get(change_url)
        assert page.status_code == 200
        assert test_url not in page.content.decode()
        assert viewer.post(test_url).status_code == 403
        conn.refresh_from_db()
        assert conn.last_test_at is None


def test_other_tenant_gets_404_and_get_is_refused(make_connection, users) -> None:
    for model in admin_models():
        conn = _make(make_connection, model)
        test_url, _ = urls(conn)
        assert client_for(users["other_operator"]).post(test_url).status_code == 404
        assert client_for(users["operator"]).get(test_url).status_code == 405
        conn.refresh_from_db()
        assert conn.last_test_at is None


def test_anonymous_is_sent_to_login(make_connection) -> None:
    conn = make_connection("smtp", "ssl_tls", "plain")
    response = Client().post(urls(conn)[0])
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_action_tests_selected_connections_of_permitted_tenants(make_connection, users, tenant) -> None:
    for model in admin_models():
        good = _make(make_connection, model)
        bad = _make(make_connection, model, listener="smtps_wronghost" if model is OutboundConnection
                    else "imaps_wronghost")
        changelist = reverse(f"admin:connections_{model._meta.model_name}_changelist")
        operator = client_for(users["operator"])
        assert "test_connection_action" in operator.get(changelist).content.decode()
        response = operator.post(changelist, {"action": "test_connection_action",
                                              "_selected_action": [good.pk, bad.pk]}, follow=True)
        shown = [str(m) for m in response.context["messages"]]
        assert any(good.name in m and "passed" in m for m in shown), shown
        assert any(bad.name in m and "FAILED at tls" in m and "mail.example.org" in m for m in shown), shown
        good.refresh_from_db()
        bad.refresh_from_db()
        assert (good.last_test_ok, bad.last_test_ok) == (True, False)

        # A viewer is not offered the action, and posting it anyway tests nothing.
        viewer = client_for(users["viewer"])
        assert "test_connection_action" not in viewer.get(changelist).content.decode()
        model.objects.filter(pk=good.pk).update(last_test_at=None)
        viewer.post(changelist, {"action": "test_connection_action", "_selected_action": [good.pk]})
        good.refresh_from_db()
        assert good.last_test_at is None


def test_warning_for_plain_without_tls_on_the_change_page(make_connection, users) -> None:
    conn = make_connection("smtp", "off", "plain", allow_plain_without_tls=True)
    page = client_for(users["viewer"]).get(urls(conn)[1]).content.decode()
    assert "allow plain login without TLS" in page and "tm-connectivity-warning" in page


@pytest.mark.parametrize("protocol", ["imap", "smtp"])
def test_plain_without_tls_is_a_warning_on_the_list_page(make_connection, users, protocol) -> None:
    risky = make_connection(protocol, "off", "plain", allow_plain_without_tls=True)
    safe = make_connection(protocol, "ssl_tls", "plain")
    page = client_for(users["viewer"]).get(
        reverse(f"admin:connections_{risky._meta.model_name}_changelist")).content.decode()
    rows = {conn.name: next(r for r in page.split("<tr")[1:] if f">{conn.name}<" in r) for conn in (risky, safe)}
    assert "tm-security-warning" in rows[risky.name] and "plain login without TLS" in rows[risky.name]
    assert "tm-security-warning" not in rows[safe.name]


def test_panel_shows_the_capabilities_the_issue_names(make_connection, users) -> None:
    conn = make_connection("imap", "starttls_mandatory", "encrypted")
    client = client_for(users["operator"])
    test_url, change_url = urls(conn)
    client.post(test_url)
    page = client.get(change_url).content.decode()
    features = page.split('class="tm-connectivity-features">', 1)[1].split("</div>", 1)[0]
    for word in ("STARTTLS yes", "AUTH CRAM-MD5 LOGIN OAUTHBEARER PLAIN XOAUTH2", "IDLE yes", "MOVE yes", "UIDPLUS yes"):
        assert word in features, features
    assert "{&#x27;" not in page  # no Python reprs of the details


def test_outbound_button_can_check_addresses(make_connection, users, mail_servers) -> None:
    sender, sender_pw = mail_servers.add_user()
    rcpt, _ = mail_servers.add_user()
    conn = make_connection("smtp", "starttls_mandatory", "plain", address=sender, password=sender_pw)
    test_url, change_url = urls(conn)
    client = client_for(users["operator"])
    assert 'name="_check_addresses"' in client.get(change_url).content.decode()
    response = client.post(test_url, {"_check_addresses": f"{rcpt}, ghost@{mail_servers.domain}"}, follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert any("FAILED at addresses" in m and "ghost@" in m for m in shown), shown
    conn.refresh_from_db()
    results = conn.last_test_report["steps"][-1]["detail"]["results"]
    assert results[rcpt]["accepted"] is True and results[f"ghost@{mail_servers.domain}"]["code"] == 550
    response = client.post(test_url, {"_check_addresses": rcpt}, follow=True)
    assert any("test passed" in str(m) for m in response.context["messages"])


@pytest.mark.django_db(transaction=True)
def test_a_slow_server_does_not_hold_the_page(make_connection, users, settings) -> None:
    """The page answers within CONNECTIVITY_ADMIN_WAIT; the test goes on and records its result."""
    import socket
    import time

    settings.CONNECTIVITY_ADMIN_WAIT = 0.5
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        conn = make_connection("imap", "ssl_tls", "plain", port=silent.getsockname()[1], timeout=3)
        test_url, _ = urls(conn)
        started = time.monotonic()
        response = client_for(users["operator"]).post(test_url, follow=True)
        assert time.monotonic() - started < 2.5
        shown = [str(m) for m in response.context["messages"]]
        assert any("still running" in m and "3 s" in m for m in shown), shown
        conn.refresh_from_db()
        assert conn.last_test_at is None
        deadline = time.monotonic() + 15
        while conn.last_test_at is None and time.monotonic() < deadline:
            time.sleep(0.1)
            conn.refresh_from_db()
    assert conn.last_test_ok is False
    assert conn.last_test_report["steps"][-1]["name"] == "tls"
    assert "within 3 s" in conn.last_test_summary
