"""connections.services.access.tenancy: who may do what in which tenant."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from connections.errors import PermissionDenied
from connections.models import Membership, Role, Tenant, UserCredential
from connections.services.access import tenancy


@pytest.fixture
def setup(db):
    User = get_user_model()
    a = Tenant.objects.create(name="A", slug="a")
    b = Tenant.objects.create(name="B", slug="b")
    users = {}
    for role in Role:
        users[role.value] = User.objects.create_user(f"{role.value}-user", is_staff=True)
        Membership.objects.create(user=users[role.value], tenant=a, role=role)
    users["root"] = User.objects.create_superuser("root", password="x-1234567")
    users["nobody"] = User.objects.create_user("nobody")
    return a, b, users


@pytest.mark.smoke
def test_rights_by_role(setup):
    a, b, users = setup
    expected = {
        "viewer": {"view"},
        "operator": {"view", "run"},
        "admin": {"view", "run", "change"},
    }
    for role, allowed in expected.items():
        for action in tenancy.ACTIONS:
            assert tenancy.can(users[role], a.pk, action=action) is (action in allowed), (role, action)
            assert tenancy.can(users[role], b.pk, action=action) is False
    for action in tenancy.ACTIONS:
        assert tenancy.can(users["root"], b.pk, action=action)
        assert not tenancy.can(users["nobody"], a.pk, action=action)
        assert not tenancy.can(AnonymousUser(), a.pk, action=action)


def test_scope_and_tenants(setup):
    a, b, users = setup
    for tenant in (a, b):
        UserCredential.objects.create(tenant=tenant, name=f"c-{tenant.slug}", username="u", password="p")
    assert {c.tenant for c in tenancy.scope(UserCredential.objects.all(), users["viewer"])} == {a}
    assert not tenancy.scope(UserCredential.objects.all(), users["viewer"], action="change").exists()
    assert tenancy.scope(UserCredential.objects.all(), users["root"]).count() == 2
    assert list(tenancy.tenants(users["operator"], action="run")) == [a]
    assert tenancy.tenant_ids(users["root"]) is None


def test_require_raises_a_clear_error(setup):
    a, _, users = setup
    tenancy.require(users["admin"], a.pk, action="change")
    with pytest.raises(PermissionDenied, match="does not allow"):
        tenancy.require(users["viewer"], a.pk, action="change")


def test_inactive_user_and_inactive_tenant_grant_nothing(setup):
    a, _, users = setup
    admin = users["admin"]
    a.active = False
    a.save()
    tenancy.forget(admin)
    assert not tenancy.can(admin, a.pk, action="view")
    a.active = True
    a.save()
    tenancy.forget(admin)
    assert tenancy.can(admin, a.pk, action="view")
    admin.is_active = False
    tenancy.forget(admin)
    assert not tenancy.can(admin, a.pk, action="view")
