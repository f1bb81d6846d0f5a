"""An empty install's admin index says what to do first: three linked steps (issue 20, item 6)."""
from __future__ import annotations

import re

import pytest
from django.urls import reverse

from connections.models import InboundConnection, Tenant, UserCredential

pytestmark = pytest.mark.django_db


def steps(html: str) -> list[tuple[str, str]]:
    block = re.search(r'<div class="module" id="tm-first-steps">.*?</ol>', html, re.S)
    if not block:
        return []
    return re.findall(r'<li class="tm-first-step" data-done="(\w+)".*?<strong>(.*?)</strong>', block.group(0), re.S)


@pytest.mark.smoke
def test_empty_install_says_where_to_start_and_marks_what_is_done(admin_client):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert "Start here: three steps to a working mailbox" in html
    assert [d for d, _ in steps(html)] == ["false", "false", "false"]
    for name in ("tenant_add", "usercredential_add", "inboundconnection_add", "outboundconnection_add"):
        assert f'href="{reverse("admin:connections_" + name)}"' in html

    tenant = Tenant.objects.create(slug="acme", name="ACME")
    UserCredential.objects.create(tenant=tenant, name="box", username="box@example.test")
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert [d for d, _ in steps(html)] == ["true", "true", "false"]

    InboundConnection.objects.create(tenant=tenant, name="in", host="h", credential_name="box")
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert steps(html) == [] and "tm-first-steps" not in html  # started: the dashboard takes over


def test_links_only_to_what_the_user_may_add(client, django_user_model):
    from connections.models import Membership, Role

    tenant = Tenant.objects.create(slug="acme", name="ACME")
    nobody = django_user_model.objects.create_user("nobody", password="pw", is_staff=True)
    client.force_login(nobody)
    assert steps(client.get(reverse("admin:index")).content.decode()) == []  # no role anywhere: nothing to start
    admin = django_user_model.objects.create_user("tenant-admin", password="pw", is_staff=True)
    Membership.objects.create(user=admin, tenant=tenant, role=Role.ADMIN)
    client.force_login(admin)
    html = client.get(reverse("admin:index")).content.decode()
    assert [d for d, _ in steps(html)] == ["true", "false", "false"]
    assert reverse("admin:connections_tenant_add") not in html  # only superusers add tenants
    assert reverse("admin:connections_inboundconnection_add") in html
