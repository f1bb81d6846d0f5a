"""Test before deploy (issue 20, item 9): the artifact page runs a connection's test with the
stored, not yet deployed values; the result says so; the deployed values stay in use."""
from __future__ import annotations

import pytest
from django.urls import reverse

from connections.models import UserCredential
from connections.services.setup import credentials as credential_service

pytestmark = [pytest.mark.django_db, pytest.mark.mailservers]


def test_a_new_password_is_tested_before_deploy(admin_client, mail_servers, make_inbound):
    address, password = mail_servers.add_user()
    conn = make_inbound(address, password)
    cred = UserCredential.objects.get(name=conn.credential_name)
    change = reverse("admin:connections_usercredential_change", args=[cred.pk])
    assert "tm-test-entered" not in admin_client.get(change).content.decode()  # nothing undeployed to test

    credential_service.save_artifact(credential=cred, password="a-wrong-new-password")
    html = admin_client.get(change).content.decode()
    url = reverse("admin:connections_usercredential_test_entered", args=[cred.pk, "inbound", conn.pk])
    assert f'formaction="{url}"' in html and f"Test with these values: inbound connection &#x27;{conn.name}&#x27;" in html
    assert admin_client.get(url).status_code == 405
    response = admin_client.post(url, follow=True)
    shown = " ".join(str(m) for m in response.context["messages"])
    assert "test with the stored, not yet deployed values FAILED at auth" in shown, shown
    assert "The deployed values stay in use." in shown and "a-wrong-new-password" not in shown
    conn.refresh_from_db()
    assert conn.last_test_at is None  # nothing stored: the connection's own test is about the deployed values

    cred = UserCredential.objects.get(pk=cred.pk)
    credential_service.save_artifact(credential=cred, password=password)
    response = admin_client.post(url, follow=True)
    shown = " ".join(str(m) for m in response.context["messages"])
    assert "test passed. With the stored, not yet deployed values of" in shown and "Deploy to use these values." in shown
    assert UserCredential.objects.get(pk=cred.pk).version == 1  # still not deployed
