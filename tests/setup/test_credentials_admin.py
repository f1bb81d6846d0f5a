"""The admin: write-only password, deploy action and button, roles, used-by, delete refusal."""
from __future__ import annotations

import re

from django.contrib.admin.models import LogEntry
from django.urls import reverse

from connections.models import CredentialStatus, InboundConnection, OutboundConnection, UserCredential
from connections.services.setup import credentials as service

from .credentials_world import SECRET, make_credential, new_key
from .leaks import leaks

CHANGELIST = "admin:connections_usercredential_changelist"
ADD = "admin:connections_usercredential_add"


def change_url(cred) -> str:
    return reverse("admin:connections_usercredential_change", args=[cred.pk])


def deploy_url(cred) -> str:
    return reverse("admin:connections_usercredential_deploy", args=[cred.pk])


def delete_url(cred) -> str:
    return reverse("admin:connections_usercredential_delete", args=[cred.pk])


def password_inputs(html: str) -> list[str]:
    return re.findall(r"<input[^>]*type=\"password\"[^>]*>", html)


def form_data(tenant, **overrides) -> dict[str, str]:
    data = {
        "tenant": str(tenant.pk), "name": "sales-box", "description": "Sales mailbox",
        "username": "sales@example.test", "new_password": SECRET, "new_password_confirmation": SECRET,
        "_save": "Save",
    }
    data.update(overrides)
    return data


def test_add_with_confirmation_stores_encrypted_and_never_renders_it(world):
    client = world.client(world.admin_a)
    page = client.get(reverse(ADD))
    assert page.status_code == 200
    assert len(password_inputs(page.content.decode())) == 2

    # Mismatched confirmation: refused, and the re-rendered form holds neither value.
    bad = client.post(reverse(ADD), form_data(world.tenant_a, new_password_confirmation=SECRET + "x"))
    assert bad.status_code == 200 and "The two passwords do not match" in bad.content.decode()
    assert leaks(bad.content, SECRET) == []
    assert not UserCredential.objects.exists()

    # No password: refused.
    bad = client.post(reverse(ADD), form_data(world.tenant_a, new_password="", new_password_confirmation=""))
    assert "Enter the password of the mailbox owner" in bad.content.decode()

    ok = client.post(reverse(ADD), form_data(world.tenant_a))
    assert ok.status_code == 302
    cred = UserCredential.objects.get(name="sales-box")
    assert cred.tenant == world.tenant_a and cred.password == SECRET  # spaces kept: strip=False
    assert cred.status == CredentialStatus.STORED and cred.version == 0

    page = client.get(change_url(cred)).content.decode()
    assert leaks(page, SECRET) == []
    inputs = password_inputs(page)
    assert len(inputs) == 2 and all("value=" not in i for i in inputs)
    assert "Not deployed yet" in page


def test_add_refuses_duplicate_name_in_tenant_and_foreign_tenant(world):
    make_credential(world.tenant_a, "sales-box")
    client = world.client(world.admin_a)
    dup = client.post(reverse(ADD), form_data(world.tenant_a))
    assert dup.status_code == 200 and "already exists in this tenant" in dup.content.decode()
    # Tenant B is not among admin_a's choices.
    foreign = client.post(reverse(ADD), form_data(world.tenant_b))
    assert foreign.status_code == 200 and "Select a valid choice" in foreign.content.decode()
    assert UserCredential.objects.filter(tenant=world.tenant_b).count() == 0


def test_change_blank_password_keeps_it_and_new_one_is_not_deployed(world):
    cred = make_credential(world.tenant_a, "sales-box", deploy_as=world.superuser)
    client = world.client(world.admin_a)
    data = form_data(world.tenant_a, description="edited", username=cred.username,
                     new_password="", new_password_confirmation="")
    data.pop("tenant")
    assert client.post(change_url(cred), data).status_code == 302
    fresh = UserCredential.objects.get(pk=cred.pk)
    assert fresh.password == SECRET and fresh.description == "edited"
    assert fresh.status == CredentialStatus.DEPLOYED and not fresh.has_undeployed_changes

    data.update(new_password="brand new pw", new_password_confirmation="brand new pw")
    assert client.post(change_url(cred), data).status_code == 302
    fresh = UserCredential.objects.get(pk=cred.pk)
    assert fresh.password == "brand new pw" and fresh.deployed_password == SECRET
    assert fresh.status == CredentialStatus.STORED
    page = client.get(change_url(cred)).content.decode()
    assert "changes not deployed" in page.lower() and "deployed version 1" in page
    assert leaks(page, "brand new pw") == [] and leaks(page, SECRET) == []
    listing = client.get(reverse(CHANGELIST)).content.decode()
    assert "changes not deployed" in listing and "••••••" in listing
    assert leaks(listing, "brand new pw") == [] and leaks(listing, SECRET) == []
    # The history names the field, never the value.
    messages = [e.get_change_message() for e in LogEntry.objects.filter(object_id=str(cred.pk))]
    assert "Changed Password." in messages
    assert all(leaks(m, "brand new pw") == [] for m in messages)


def test_deploy_button_and_history(world):
    cred = make_credential(world.tenant_a, "sales-box")
    client = world.client(world.operator_a)
    page = client.get(change_url(cred)).content.decode()
    assert deploy_url(cred) in page and ">Deploy<" in page
    assert password_inputs(page) == []  # operator: may deploy, may not change
    # GET only asks (the checklist's "Deploy" link lands here); deploying takes the POST.
    confirm = client.get(deploy_url(cred))
    assert confirm.status_code == 200 and "Yes, deploy" in confirm.content.decode()
    assert UserCredential.objects.get(pk=cred.pk).version == 0
    assert client.put(deploy_url(cred)).status_code == 405
    response = client.post(deploy_url(cred), follow=True)
    assert "Deployed &#x27;sales-box&#x27; as version 1." in response.content.decode()
    fresh = UserCredential.objects.get(pk=cred.pk)
    assert fresh.version == 1 and fresh.deployed_by == world.operator_a
    hist = client.get(reverse("admin:connections_usercredential_history", args=[cred.pk])).content.decode()
    assert "Deployed version 1" in hist and "operator_a" in hist


def test_deploy_confirmation_returns_to_the_connection(world):
    from connections.models import InboundConnection

    cred = make_credential(world.tenant_a, "sales-box")
    conn = InboundConnection.objects.create(tenant=world.tenant_a, name="in-1", host="h", credential_name="sales-box")
    back = reverse("admin:connections_inboundconnection_change", args=[conn.pk]) + "#setup-checklist"
    client = world.client(world.operator_a)
    page = client.get(deploy_url(cred), {"next": back}).content.decode()
    assert "inbound connection &#x27;in-1&#x27;" in page and f'value="{back}"' in page
    response = client.post(deploy_url(cred), {"next": back})
    assert response.status_code == 302 and response["Location"] == back
    assert UserCredential.objects.get(pk=cred.pk).version == 1
    # Elsewhere is not a place to go back to.
    response = client.post(deploy_url(cred), {"next": "https://evil.example/"})
    assert response["Location"] == change_url(cred)


def test_deploy_action(world):
    a1 = make_credential(world.tenant_a, "one")
    a2 = make_credential(world.tenant_a, "two")
    client = world.client(world.operator_a)
    response = client.post(
        reverse(CHANGELIST), {"action": "deploy_selected", "_selected_action": [a1.pk, a2.pk]}, follow=True
    )
    assert "Deployed" in response.content.decode()
    assert sorted(UserCredential.objects.values_list("version", flat=True)) == [1, 1]


def test_viewer_is_read_only(world):
    cred = make_credential(world.tenant_a, "sales-box", deploy_as=world.superuser)
    client = world.client(world.viewer_a)
    listing = client.get(reverse(CHANGELIST))
    assert listing.status_code == 200 and "sales-box" in listing.content.decode()
    assert "deploy_selected" not in listing.content.decode()
    page = client.get(change_url(cred))
    html = page.content.decode()
    assert page.status_code == 200 and password_inputs(html) == [] and deploy_url(cred) not in html
    assert "••••••" in html and leaks(html, SECRET) == []
    assert client.get(reverse(ADD)).status_code == 403
    assert client.post(deploy_url(cred)).status_code == 403
    assert client.post(
        reverse(CHANGELIST), {"action": "deploy_selected", "_selected_action": [cred.pk]}
    ).status_code in (200, 302)
    assert client.post(change_url(cred), form_data(world.tenant_a, description="x")).status_code == 403
    assert client.post(delete_url(cred), {"post": "yes"}).status_code == 403
    fresh = UserCredential.objects.get(pk=cred.pk)
    assert fresh.version == 1 and fresh.description == ""


def test_other_tenant_sees_nothing(world):
    cred = make_credential(world.tenant_a, "alpha-only")
    client = world.client(world.admin_b)
    listing = client.get(reverse(CHANGELIST)).content.decode()
    assert "alpha-only" not in listing
    assert "Alpha Corp" not in listing  # not even in the tenant filter
    assert client.get(change_url(cred)).status_code == 404
    assert client.post(deploy_url(cred)).status_code == 404
    assert client.get(delete_url(cred)).status_code == 404
    client.post(reverse(CHANGELIST), {"action": "deploy_selected", "_selected_action": [cred.pk]})
    assert UserCredential.objects.get(pk=cred.pk).version == 0


def _connections_using(cred):
    inbound = InboundConnection.objects.create(
        tenant=cred.tenant, name="support-in", host="imap.example.test", credential_name=cred.name
    )
    outbound = OutboundConnection.objects.create(
        tenant=cred.tenant, name="support-out", host="smtp.example.test", credential_name=cred.name,
        default_from="support@example.test",
    )
    return inbound, outbound


def test_used_by_and_delete_refused_naming_connections(world):
    cred = make_credential(world.tenant_a, "support-box")
    unused = make_credential(world.tenant_a, "unused-box")
    _connections_using(cred)
    # Same name in another tenant does not count.
    InboundConnection.objects.create(tenant=world.tenant_b, name="b-in", host="h", credential_name="unused-box")
    client = world.client(world.admin_a)
    page = client.get(change_url(cred)).content.decode()
    assert "support-in" in page and "support-out" in page

    confirm = client.get(delete_url(cred)).content.decode()
    assert "cannot be deleted" in confirm and "support-in" in confirm and "support-out" in confirm
    assert "Yes, I’m sure" not in confirm
    client.post(delete_url(cred), {"post": "yes"})
    assert UserCredential.objects.filter(pk=cred.pk).exists()

    bulk = client.post(
        reverse(CHANGELIST), {"action": "delete_selected", "_selected_action": [cred.pk, unused.pk], "post": "yes"}
    )
    html = bulk.content.decode()
    assert "cannot be deleted" in html and "support-in" in html and "support-out" in html
    assert UserCredential.objects.filter(pk__in=[cred.pk, unused.pk]).count() == 2

    # An unused artifact is deleted normally.
    client.post(delete_url(unused), {"post": "yes"})
    assert not UserCredential.objects.filter(pk=unused.pk).exists()


def test_renaming_a_used_artifact_is_refused(world):
    cred = make_credential(world.tenant_a, "support-box")
    _connections_using(cred)
    data = form_data(world.tenant_a, name="renamed", new_password="", new_password_confirmation="")
    data.pop("tenant")
    response = world.client(world.admin_a).post(change_url(cred), data)
    assert response.status_code == 200 and "change their Credential Name first" in response.content.decode()
    assert UserCredential.objects.get(pk=cred.pk).name == "support-box"


def test_undecryptable_row_pages_render_with_clear_error(world, settings):
    settings.FERNET_KEYS = [new_key()]
    cred = make_credential(world.tenant_a, "orphan-box", deploy_as=world.superuser)
    fine = make_credential(world.tenant_a, "fine-box")
    settings.FERNET_KEYS = [new_key()]  # the old key is gone
    # fine-box was encrypted with the old key too; re-store it with the current key.
    service.save_artifact(credential=UserCredential.objects.get(pk=fine.pk), password="fresh pw")

    client = world.client(world.operator_a)
    listing = client.get(reverse(CHANGELIST))
    assert listing.status_code == 200
    html = listing.content.decode()
    assert "orphan-box" in html and "cannot decrypt" in html and "fine-box" in html

    page = client.get(change_url(cred))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Cannot decrypt the password of User Credentials artifact &#x27;orphan-box&#x27;" in html
    assert "FERNET_KEYS" in html and "InvalidToken" not in html

    response = client.post(deploy_url(cred), follow=True).content.decode()
    assert "Not deployed" in response and "orphan-box" in response
    assert UserCredential.objects.filter(pk=cred.pk).values_list("status", flat=True).get() == "error"

    # History and delete confirmation also render.
    assert client.get(reverse("admin:connections_usercredential_history", args=[cred.pk])).status_code == 200
    assert world.client(world.admin_a).get(delete_url(cred)).status_code == 200

    # An admin can store a new password; the row is usable again after deploy.
    data = form_data(world.tenant_a, name="orphan-box", new_password="replacement", new_password_confirmation="replacement")
    data.pop("tenant")
    assert world.client(world.admin_a).post(change_url(cred), data).status_code == 302
    service.deploy(credential_id=cred.pk, user=world.admin_a)
    assert service.resolve_deployed(tenant_id=world.tenant_a.pk, name="orphan-box").password == "replacement"
