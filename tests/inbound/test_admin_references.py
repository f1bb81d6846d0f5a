"""Credential Name: the tenant's artifacts are offered (the name stays the reference), and
saving a connection that is Blocked says why (issue 20, item 2)."""
from __future__ import annotations

import re

import pytest
from django.urls import reverse

from connections.models import InboundConnection, Tenant, UserCredential

pytestmark = pytest.mark.django_db


def _form(tenant, credential_name: str) -> dict:
    return {
        "tenant": tenant.pk, "name": "new-in", "enabled": "on", "protocol": "imap", "host": "imap.example.test",
        "protection": "ssl_tls", "timeout": 30, "verify_certificate": "on", "authentication": "plain",
        "credential_name": credential_name, "folder": "INBOX", "selection": "unread", "max_messages": 100,
        "max_message_size": 10_000_000, "post_processing": "mark_read", "archive_folder": "",
        "schedule_kind": "interval", "schedule_every": 300, "schedule_weekdays": "", "schedule_start_hour": 0,
        "schedule_end_hour": 24, "schedule_cron": "", "timezone": "UTC", "lock_timeout": 1800,
    }


def test_credential_name_offers_the_tenants_artifacts(admin_client, tenant, make_credential):
    name = make_credential("orders@example.test")
    other = Tenant.objects.create(slug="other-t", name="Other")
    UserCredential.objects.create(tenant=other, name="not-for-this-tenant", username="x@example.test")
    conn = InboundConnection.objects.create(tenant=tenant, name="in-1", host="h", credential_name=name)
    html = admin_client.get(reverse("admin:connections_inboundconnection_change", args=[conn.pk])).content.decode()
    field = re.search(r'<input[^>]*name="credential_name"[^>]*>', html).group(0)
    assert 'list="id_credential_name_artifacts"' in field and f'value="{name}"' in field
    datalist = re.search(r'<datalist id="id_credential_name_artifacts".*?</datalist>', html, re.S).group(0)
    assert f'value="{name}"' in datalist and "orders@example.test, deployed v1" in datalist
    assert "not-for-this-tenant" not in datalist  # only the connection's tenant
    # The add page (tenant not chosen yet): the artifacts of every tenant, with the tenant named.
    add = admin_client.get(reverse("admin:connections_inboundconnection_add")).content.decode()
    assert "not-for-this-tenant" in add and "[Other]" in add


def test_saving_a_blocked_connection_warns_why(admin_client, tenant, make_credential):
    url = reverse("admin:connections_inboundconnection_add")
    response = admin_client.post(url, _form(tenant, "orders-typo"), follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    warning = next(m for m in shown if "is Blocked" in m)
    assert "Saved, but 'new-in' is Blocked" in warning
    assert "No User Credentials artifact named 'orders-typo' exists in this tenant." in warning
    conn = InboundConnection.objects.get(name="new-in")
    page = admin_client.get(reverse("admin:connections_inboundconnection_change", args=[conn.pk])).content.decode()
    assert "No warnings." not in page and "the connection is Blocked: see the setup checklist above" in page
    # Fixed: no warning.
    data = _form(tenant, make_credential())
    response = admin_client.post(reverse("admin:connections_inboundconnection_change", args=[conn.pk]), data, follow=True)
    assert not any("is Blocked" in str(m) for m in response.context["messages"])
