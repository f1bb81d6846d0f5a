"""Role-scoped admin: two tenants, three roles, a superuser and a staff user without
membership, against the real admin site (User Credentials artifacts, tenants)."""
from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.contrib.admin import AdminSite, TabularInline
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory
from django.urls import reverse

from connections.admin.base import TenantScopedAdmin
from connections.models import (
    Membership, OutboundConnection, OutboxMessage, Role, Tenant, UserCredential,
)
from connections.services.setup import credentials as credential_service

PASSWORD = "login-pw-42"


@dataclass
class World:
    a: Tenant
    b: Tenant
    cred_a: UserCredential
    cred_b: UserCredential
    users: dict

    def client(self, who: str) -> Client:
        client = Client()
        client.force_login(self.users[who])
        return client


def make_credential(tenant: Tenant, name: str) -> UserCredential:
    return credential_service.save_artifact(
        credential=UserCredential(tenant=tenant, name=name, username=f"{name}@example.test"),
        password="mailbox-secret",
    )


@pytest.fixture
def world(db) -> World:
    User = get_user_model()
    a = Tenant.objects.create(name="Acme Alpha", slug="acme")
    b = Tenant.objects.create(name="Globex Beta", slug="globex")

    def staff(username: str, *memberships: tuple[Tenant, str]):
        user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
        for tenant, role in memberships:
            Membership.objects.create(user=user, tenant=tenant, role=role)
        return user

    users = {
        "viewer": staff("viewer", (a, Role.VIEWER)),
        "operator": staff("operator", (a, Role.OPERATOR)),
        "admin": staff("admin", (a, Role.ADMIN)),
        # admin in A, viewer in B: may change only A, sees B read-only
        "mixed": staff("mixed", (a, Role.ADMIN), (b, Role.VIEWER)),
        "admin_both": staff("admin_both", (a, Role.ADMIN), (b, Role.ADMIN)),
        "nomember": staff("nomember"),
        "superuser": User.objects.create_superuser("root", password=PASSWORD),
    }
    return World(a=a, b=b, cred_a=make_credential(a, "alpha-box"), cred_b=make_credential(b, "beta-box"),
                 users=users)


def url(name: str, *args) -> str:
    return reverse(f"admin:connections_usercredential_{name}", args=args)


def select_options(html: str, name: str) -> dict[str, bool]:
    """value -> selected, for the <select name=...> of a rendered form."""
    match = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S)
    assert match, f"no select {name}"
    return {
        value: bool(selected)
        for value, selected in re.findall(r'<option value="([^"]*)"( selected)?', match.group(1))
        if value
    }


# --- what each user sees


@pytest.mark.smoke
@pytest.mark.parametrize("who", ["viewer", "operator", "admin"])
def test_changelist_shows_only_own_tenants_rows(world, who):
    response = world.client(who).get(url("changelist"))
    assert response.status_code == 200
    shown = set(response.context["cl"].result_list)
    assert shown == {world.cred_a}
    assert "beta-box" not in response.content.decode()


def test_superuser_sees_every_tenant(world):
    response = world.client("superuser").get(url("changelist"))
    assert set(response.context["cl"].result_list) == {world.cred_a, world.cred_b}


def test_user_in_two_tenants_sees_both(world):
    response = world.client("mixed").get(url("changelist"))
    assert set(response.context["cl"].result_list) == {world.cred_a, world.cred_b}


def test_tenant_list_filter_names_only_own_tenants(world):
    # A second tenant of the user's own makes the filter appear (it needs two choices).
    c = Tenant.objects.create(name="Initech Gamma", slug="initech")
    Membership.objects.create(user=world.users["admin"], tenant=c, role=Role.VIEWER)
    make_credential(c, "gamma-box")
    response = world.client("admin").get(url("changelist"))
    tenant_filter = next(f for f in response.context["cl"].filter_specs if f.field_path == "tenant")
    assert {label for _, label in tenant_filter.lookup_choices} == {"Acme Alpha", "Initech Gamma"}
    assert "Globex Beta" not in response.content.decode()  # not even as a filter choice


def test_staff_without_membership_sees_nothing(world):
    client = world.client("nomember")
    assert client.get(url("changelist")).status_code == 403
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    assert "usercredential" not in index.content.decode()
    assert client.get(url("add")).status_code == 403


@pytest.mark.parametrize("who", ["viewer", "operator", "admin", "nomember"])
@pytest.mark.parametrize("view", ["change", "history", "delete"])
def test_other_tenants_object_answers_404(world, who, view):
    client = world.client(who)
    assert client.get(url(view, world.cred_b.pk)).status_code == 404
    # Same answer as for an id that does not exist at all: existence is not revealed.
    assert client.get(url(view, 987654)).status_code == 404


@pytest.mark.parametrize("view", ["change", "delete"])
def test_posting_to_other_tenants_object_answers_404_and_changes_nothing(world, view):
    client = world.client("admin")
    data = {"tenant": world.a.pk, "name": "stolen", "username": "x", "post": "yes"}
    assert client.post(url(view, world.cred_b.pk), data).status_code == 404
    world.cred_b.refresh_from_db()
    assert world.cred_b.name == "beta-box"


def test_superuser_opens_any_tenants_object(world):
    client = world.client("superuser")
    for view in ("change", "history", "delete"):
        assert client.get(url(view, world.cred_b.pk)).status_code == 200


# --- forms: tenant choices and preset


def test_tenant_choices_are_tenants_where_the_user_is_admin(world):
    html = world.client("mixed").get(url("add")).content.decode()
    assert set(select_options(html, "tenant")) == {str(world.a.pk)}


def test_add_form_presets_the_only_tenant(world):
    html = world.client("admin").get(url("add")).content.decode()
    assert select_options(html, "tenant") == {str(world.a.pk): True}


def test_add_form_presets_the_only_tenant_for_a_superuser_too(world):
    world.b.delete()
    html = world.client("superuser").get(url("add")).content.decode()
    assert select_options(html, "tenant") == {str(world.a.pk): True}


def test_add_form_does_not_guess_between_two_tenants(world):
    for who in ("admin_both", "superuser"):
        html = world.client(who).get(url("add")).content.decode()
        assert select_options(html, "tenant") == {str(world.a.pk): False, str(world.b.pk): False}


def test_adding_into_a_tenant_where_the_user_is_only_viewer_is_refused(world):
    response = world.client("mixed").post(url("add"), {
        "tenant": world.b.pk, "name": "sneaky", "username": "u",
        "new_password": "pw-123456", "new_password_confirmation": "pw-123456",
    })
    assert response.status_code == 200  # the form comes back with an error
    assert "Select a valid choice" in response.content.decode()
    assert not UserCredential.objects.filter(name="sneaky").exists()


def test_admin_adds_into_own_tenant(world):
    response = world.client("admin").post(url("add"), {
        "tenant": world.a.pk, "name": "new-box", "username": "u@example.test",
        "new_password": "pw-123456", "new_password_confirmation": "pw-123456",
    })
    assert response.status_code == 302
    assert UserCredential.objects.get(name="new-box").tenant == world.a


# --- roles


def test_viewer_is_read_only(world):
    client = world.client("viewer")
    response = client.get(url("change", world.cred_a.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert response.context["has_change_permission"] is False
    assert 'name="_save"' not in html and 'name="username"' not in html
    assert "alpha-box@example.test" in html  # shown as text
    assert client.get(url("add")).status_code == 403
    assert client.post(url("change", world.cred_a.pk), {"name": "renamed", "username": "x"}).status_code == 403
    assert client.get(url("delete", world.cred_a.pk)).status_code == 403
    assert client.post(url("delete", world.cred_a.pk), {"post": "yes"}).status_code == 403
    world.cred_a.refresh_from_db()
    assert world.cred_a.name == "alpha-box"


def test_viewer_gets_no_actions(world):
    response = world.client("viewer").get(url("changelist"))
    assert "deploy_selected" not in response.content.decode()
    response = world.client("viewer").post(
        url("changelist"), {"action": "deploy_selected", "_selected_action": [world.cred_a.pk]}
    )
    world.cred_a.refresh_from_db()
    assert world.cred_a.version == 0


def test_operator_runs_actions_but_cannot_change(world):
    client = world.client("operator")
    assert client.post(url("change", world.cred_a.pk), {"name": "renamed", "username": "x"}).status_code == 403
    assert client.get(url("add")).status_code == 403
    assert client.get(url("delete", world.cred_a.pk)).status_code == 403
    html = client.get(url("change", world.cred_a.pk)).content.decode()
    assert 'name="_save"' not in html
    response = client.post(
        url("changelist"), {"action": "deploy_selected", "_selected_action": [world.cred_a.pk]}
    )
    assert response.status_code == 302
    world.cred_a.refresh_from_db()
    assert world.cred_a.version == 1 and world.cred_a.deployed_by == world.users["operator"]


def test_action_skips_rows_of_tenants_where_the_role_is_too_low(world):
    # "mixed" is admin in A and viewer in B; B's row is visible and selectable.
    client = world.client("mixed")
    response = client.post(
        url("changelist"),
        {"action": "deploy_selected", "_selected_action": [world.cred_a.pk, world.cred_b.pk]},
        follow=True,
    )
    world.cred_a.refresh_from_db()
    world.cred_b.refresh_from_db()
    assert world.cred_a.version == 1
    assert world.cred_b.version == 0
    assert "1 selected object(s) skipped" in response.content.decode()


def test_delete_selected_cannot_reach_a_tenant_where_the_user_is_viewer(world):
    client = world.client("mixed")
    client.post(url("changelist"), {
        "action": "delete_selected", "_selected_action": [world.cred_a.pk, world.cred_b.pk], "post": "yes",
    })
    assert UserCredential.objects.filter(pk=world.cred_b.pk).exists()
    assert not UserCredential.objects.filter(pk=world.cred_a.pk).exists()


def test_admin_changes_and_deletes(world):
    client = world.client("admin")
    response = client.post(url("change", world.cred_a.pk), {
        "name": "alpha-box", "username": "changed@example.test", "description": "edited",
        "new_password": "", "new_password_confirmation": "",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    world.cred_a.refresh_from_db()
    assert world.cred_a.username == "changed@example.test"
    assert client.post(url("delete", world.cred_a.pk), {"post": "yes"}).status_code == 302
    assert not UserCredential.objects.filter(pk=world.cred_a.pk).exists()


def test_mixed_user_sees_other_tenants_row_read_only(world):
    client = world.client("mixed")
    response = client.get(url("change", world.cred_b.pk))
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert client.post(url("change", world.cred_b.pk), {"name": "x", "username": "x"}).status_code == 403


# --- tenants


def test_members_see_their_tenants_read_only(world):
    client = world.client("admin")
    changelist = client.get(reverse("admin:connections_tenant_changelist"))
    assert set(changelist.context["cl"].result_list) == {world.a}
    assert client.get(reverse("admin:connections_tenant_change", args=[world.b.pk])).status_code == 404
    assert client.get(reverse("admin:connections_tenant_delete", args=[world.b.pk])).status_code == 404
    own = client.get(reverse("admin:connections_tenant_change", args=[world.a.pk]))
    assert own.status_code == 200 and own.context["has_change_permission"] is False
    assert client.get(reverse("admin:connections_tenant_add")).status_code == 403
    assert client.get(reverse("admin:connections_membership_changelist")).status_code == 403


def test_inactive_tenant_grants_nothing(world):
    world.a.active = False
    world.a.save()
    response = world.client("admin").get(url("changelist"))
    assert response.status_code == 403


# --- the base class on any tenant-owned model: foreign keys to tenant-owned rows


class OutboxProbeAdmin(TenantScopedAdmin):
    fields = ["tenant", "connection", "from_address", "subject"]


def test_foreign_key_to_tenant_owned_rows_is_scoped(world):
    conn_a = OutboundConnection.objects.create(tenant=world.a, name="a-out", host="smtp.a", default_from="a@a")
    conn_b = OutboundConnection.objects.create(tenant=world.b, name="b-out", host="smtp.b", default_from="b@b")
    model_admin = OutboxProbeAdmin(OutboxMessage, AdminSite(name="probe"))
    request = RequestFactory().get("/")

    def choices(who: str) -> tuple[set, set]:
        request.user = get_user_model().objects.get(username=world.users[who].username)
        form = model_admin.get_form(request)()
        return set(form.fields["connection"].queryset), set(form.fields["tenant"].queryset)

    assert choices("admin") == ({conn_a}, {world.a})
    assert choices("mixed") == ({conn_a}, {world.a})
    assert choices("viewer") == (set(), set())
    assert choices("superuser") == ({conn_a, conn_b}, {world.a, world.b})

    # An admin that lets operators write (composing mail is a send) scopes by "run".
    class ComposeAdmin(OutboxProbeAdmin):
        edit_action = "run"

    model_admin = ComposeAdmin(OutboxMessage, AdminSite(name="probe2"))
    assert choices("operator") == ({conn_a}, {world.a})
    assert choices("viewer") == (set(), set())


class CredentialProbeAdmin(TenantScopedAdmin):
    list_display = ["name", "tenant"]
    list_filter = ["tenant", "status"]  # plain names, as most admins write them


def test_base_scopes_plain_related_list_filters(world):
    c = Tenant.objects.create(name="Initech Gamma", slug="initech")
    Membership.objects.create(user=world.users["admin"], tenant=c, role=Role.VIEWER)
    make_credential(c, "gamma-box")
    model_admin = CredentialProbeAdmin(UserCredential, AdminSite(name="probe3"))
    request = RequestFactory().get("/")
    request.user = get_user_model().objects.get(username="admin")
    changelist = model_admin.get_changelist_instance(request)
    tenant_filter = next(f for f in changelist.filter_specs if f.field_path == "tenant")
    assert {label for _, label in tenant_filter.lookup_choices} == {"Acme Alpha", "Initech Gamma"}
    assert set(changelist.result_list) == {world.cred_a, UserCredential.objects.get(name="gamma-box")}


# --- inlines of tenant-owned rows


def test_tenant_scoped_inline_follows_the_parent_and_saves_rows_into_its_tenant(world):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from connections.admin.base import TenantScopedInline
    from connections.models import OutboxAttachment

    class AttachmentProbeInline(TenantScopedInline, TabularInline):
        model = OutboxAttachment
        fields = ["name", "file"]

    class MessageProbeAdmin(TenantScopedAdmin):
        fields = ["from_address"]
        inlines = [AttachmentProbeInline]

    conn = OutboundConnection.objects.create(tenant=world.a, name="a-out", host="smtp.a", default_from="a@a")
    message = OutboxMessage.objects.create(tenant=world.a, connection=conn, from_address="a@a")
    site = AdminSite(name="probe4")
    parent_admin = MessageProbeAdmin(OutboxMessage, site)
    inline = AttachmentProbeInline(OutboxMessage, site)
    request = RequestFactory().post("/")
    User = get_user_model()

    request.user = User.objects.get(username="viewer")
    assert inline.has_view_permission(request, message)
    assert not inline.has_add_permission(request, message) and not inline.has_change_permission(request, message)
    request.user = User.objects.get(username="admin_both")
    assert inline.has_add_permission(request, message)
    request.user = User.objects.get(username="nomember")
    assert not inline.has_view_permission(request, message)

    request.user = User.objects.get(username="admin")
    FormSet = inline.get_formset(request, message)
    assert "tenant" not in FormSet.form.base_fields
    formset = FormSet(
        {"attachments-TOTAL_FORMS": "1", "attachments-INITIAL_FORMS": "0", "attachments-0-name": "a.txt"},
        {"attachments-0-file": SimpleUploadedFile("a.txt", b"hello")},
        instance=message, prefix="attachments",
    )
    assert formset.is_valid(), formset.errors
    parent_form = parent_admin.get_form(request, message)(instance=message)
    parent_admin.save_formset(request, parent_form, formset, change=True)
    assert OutboxAttachment.objects.get(message=message).tenant == world.a
    assert list(inline.get_queryset(request)) == list(OutboxAttachment.objects.filter(tenant=world.a))
