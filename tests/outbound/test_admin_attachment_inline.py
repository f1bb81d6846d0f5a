"""The outbox message page lists each attachment's file name once (not also as the row's title)."""
from __future__ import annotations

import re
import uuid

import pytest
from django.urls import reverse

from connections.models import OutboundConnection, Tenant
from connections.services.outbound import enqueue
from connections.services.outbound.mime import AttachmentIn

pytestmark = pytest.mark.django_db


def test_attachment_name_is_shown_once(client, django_user_model, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    tenant = Tenant.objects.create(slug=f"t-{uuid.uuid4().hex[:6]}", name="T")
    conn = OutboundConnection.objects.create(
        tenant=tenant, name="smtp-x", host="127.0.0.1", port=1, protection="off", authentication="none",
        default_from="a@example.test",
    )
    message = enqueue.enqueue(
        connection_id=conn.pk, to=["b@example.test"], subject="s", text="body", dispatch=False,
        attachments=[AttachmentIn("Quarterly-Report-Q3.pdf", b"%PDF-1.4 tiny", "application/pdf")],
    )
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.test", "pw"))
    page = client.get(reverse("admin:connections_outboxmessage_change", args=[message.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    group = re.search(r'<div class="js-inline-admin-formset inline-group" id="attachments-group".*?</fieldset>', html, re.S)
    assert group, "the attachments inline is on the page"
    assert group.group(0).count("Quarterly-Report-Q3.pdf") == 1
    assert "application/pdf" in group.group(0)
