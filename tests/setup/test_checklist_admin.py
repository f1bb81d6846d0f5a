"""The checklist panel, diagram, readiness column and filter in the admin; the index dashboard."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from connections.models import Membership, OutboxMessage, PollRun

from . import factories as f

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.setup.admin_urls")]


@pytest.fixture
def superuser(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return user


def member(client, tenant, role="viewer", name="vera"):
    user = get_user_model().objects.create_user(name, f"{name}@example.com", "pw", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=role)
    client.force_login(user)
    return user


def states(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-key="(\w+)" data-state="(\w+)"', html))


def test_change_page_shows_the_checklist_and_the_diagram(client, superuser):
    t = f.tenant("acme")
    conn = f.inbound(t, credential_name="orders-box")
    html = client.get(f"/tmtest/connections/inboundconnection/{conn.pk}/change/").content.decode()
    assert 'id="setup-checklist"' in html and 'data-readiness="blocked"' in html
    assert states(html)["credential_exists"] == "fail"
    assert f"/admin/connections/usercredential/add/?name=orders-box&amp;tenant={t.pk}" in html
    assert 'class="tm-diagram" data-direction="inbound"' in html
    # The fields are still all there, and the checklist is shown once.
    assert html.count('id="setup-checklist"') == 1 and 'name="host"' in html

    f.credential(t, "orders-box")  # created and deployed: the panel refreshes to ✓
    type(conn).objects.filter(pk=conn.pk).update(last_test_at=timezone.now())  # and tested again
    panel = client.get(f"/tmtest/connections/inboundconnection/{conn.pk}/checklist/").content.decode()
    assert states(panel)["credential_exists"] == "ok" and states(panel)["credential_deployed"] == "ok"
    assert 'data-readiness="ready"' in panel


def test_outbound_change_page_without_declared_fieldsets(client, superuser):
    t = f.tenant("acme")
    conn = f.outbound(t, default_from="")
    html = client.get(f"/tmtest/connections/outboundconnection/{conn.pk}/change/").content.decode()
    assert states(html)["default_from"] == "fail"
    assert 'data-direction="outbound"' in html and html.count('id="setup-checklist"') == 1


def test_add_page_has_no_checklist(client, superuser):
    html = client.get("/tmtest/connections/inboundconnection/add/").content.decode()
    assert "setup-checklist" not in html


def test_readiness_column_and_filter(client, superuser, django_assert_max_num_queries):
    t = f.tenant("acme")
    f.credential(t)
    ready = f.inbound(t, "ready-one")
    blocked = f.inbound(t, "blocked-one", credential_name="nope")
    for n in range(10):
        f.inbound(t, f"more{n}")
    html = client.get("/tmtest/connections/inboundconnection/").content.decode()
    assert html.count('data-readiness="ready"') == 11 and html.count('data-readiness="blocked"') == 1
    # The column costs one query for the whole page, not one per row.
    with django_assert_max_num_queries(14) as ctx:
        client.get("/tmtest/connections/inboundconnection/")
    base = len(ctx.captured_queries)
    for n in range(10, 30):
        f.inbound(t, f"more{n}")
    with django_assert_max_num_queries(base + 1):
        client.get("/tmtest/connections/inboundconnection/")

    html = client.get("/tmtest/connections/inboundconnection/?readiness=blocked").content.decode()
    assert "blocked-one" in html and "ready-one" not in html
    html = client.get("/tmtest/connections/inboundconnection/?readiness=ready").content.decode()
    assert "ready-one" in html and "blocked-one" not in html
    assert ready.pk and blocked.pk


def test_checklist_view_is_scoped_to_the_users_tenants(client):
    a, b = f.tenant("acme"), f.tenant("globex")
    mine, theirs = f.inbound(a), f.inbound(b)
    member(client, a)
    assert client.get(f"/tmtest/connections/inboundconnection/{mine.pk}/checklist/").status_code == 200
    assert client.get(f"/tmtest/connections/inboundconnection/{theirs.pk}/checklist/").status_code == 404


def test_dashboard_on_the_admin_index_is_scoped(client):
    a, b = f.tenant("acme", "ACME Corp"), f.tenant("globex", "Globex Inc")
    f.credential(a)
    conn = f.inbound(a)
    f.inbound(a, "broken", credential_name="nope")
    out = f.outbound(a)
    f.inbound(b, "secret-b")
    now = timezone.now()
    for outcome, age in (("success", 1), ("failed", 2), ("success", 30)):  # the last one is too old
        PollRun.objects.create(tenant=a, connection=conn, started_at=now - timedelta(hours=age), outcome=outcome)
    for status in ("queued", "queued", "failed", "sent"):
        OutboxMessage.objects.create(tenant=a, connection=out, from_address="a@acme.example", to=["x@y.example"],
                                     status=status)
    member(client, a)
    html = client.get("/admin/").content.decode()
    row = re.search(r'<tr class="tm-tenant" data-tenant="acme">(.*?)</tr>', html, re.S).group(1)
    cols = dict(re.findall(r'data-col="(\w+)"[^>]*>(\d+)<', row))
    assert cols == {
        "ready": "2", "attention": "0", "blocked": "1", "polls": "2", "failed_polls": "1",
        "outbox_queued": "2", "outbox_failed": "1",
    }
    assert "Globex" not in html and "secret-b" not in html
    assert "inbound broken" in html


def test_superuser_dashboard_lists_every_tenant(client, superuser):
    f.tenant("acme", "ACME Corp")
    f.tenant("globex", "Globex Inc")
    html = client.get("/admin/").content.decode()
    assert 'data-tenant="acme"' in html and 'data-tenant="globex"' in html
    assert 'id="content-main"' in html  # Django's own index is still there


def test_connectivity_item_has_a_test_button_for_operators_only(client):
    t = f.tenant("acme")
    conn = f.outbound(t, last_test_at=None, last_test_ok=None)
    member(client, t, role="operator", name="olga")
    html = client.get(f"/tmtest/connections/outboundconnection/{conn.pk}/change/").content.decode()
    assert f'formaction="/tmtest/connections/outboundconnection/{conn.pk}/test/"' in html
    panel = client.get(f"/tmtest/connections/outboundconnection/{conn.pk}/checklist/").content.decode()
    assert "formaction=" in panel
    member(client, t, role="viewer", name="vic")
    html = client.get(f"/tmtest/connections/outboundconnection/{conn.pk}/change/").content.decode()
    assert "formaction=" not in html and f'href="/admin/connections/outboundconnection/{conn.pk}/change/#connectivity-test"' in html


@pytest.mark.urls("tenantmail.urls")
def test_the_real_connection_admins_show_readiness_and_the_checklist(client, superuser):
    t = f.tenant("acme")
    f.credential(t)
    inbound = f.inbound(t, "ready-in")
    f.inbound(t, "blocked-in", credential_name="nope")
    outbound = f.outbound(t, "blocked-out", credential_name="nope")
    for model, ready_name, blocked_name in (
        ("inboundconnection", "ready-in", "blocked-in"), ("outboundconnection", None, "blocked-out"),
    ):
        html = client.get(f"/admin/connections/{model}/").content.decode()
        assert 'class="tm-readiness" data-readiness=' in html, model
        html = client.get(f"/admin/connections/{model}/?readiness=blocked").content.decode()
        assert blocked_name in html and (ready_name is None or ready_name not in html)
    for model, conn in (("inboundconnection", inbound), ("outboundconnection", outbound)):
        html = client.get(f"/admin/connections/{model}/{conn.pk}/change/").content.decode()
        assert html.count('id="setup-checklist"') == 1 and "tm-diagram" in html, model


def test_panel_and_column_escape_what_operators_typed(client, superuser):
    t = f.tenant("acme", "<b>ACME</b>")
    evil = '"><img src=x onerror=alert(1)>'
    conn = f.inbound(t, credential_name=evil, folder=evil, selection="all")
    html = client.get(f"/tmtest/connections/inboundconnection/{conn.pk}/change/").content.decode()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "name=%22%3E%3Cimg" in html  # the add link's query string is URL-encoded
    html = client.get("/tmtest/connections/inboundconnection/").content.decode()
    assert "<img src=x" not in html


def test_dashboard_names_what_is_wrong_not_the_goal(client, superuser):
    t = f.tenant("acme", "ACME Corp")
    f.credential(t)
    f.inbound(t, "pop-in", last_test_ok=False, last_test_summary="POP3 pop.acme.example:995: login refused")
    html = client.get("/admin/").content.decode()
    blocked = re.search(r'<td colspan="8" class="tm-blocked-names">(.*?)</td>', html, re.S).group(1)
    assert "inbound pop-in" in blocked
    # The failing item's state, not its success label ("Last connectivity test passed").
    assert "Last connectivity test passed" not in blocked
    assert "✗ Failed" in blocked and "login refused" in blocked
