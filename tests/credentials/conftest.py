"""Two tenants, one user per role, and helpers for real Fernet key lists."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.test import Client

from connections.models import Membership, Role, Tenant, UserCredential
from connections.services.setup import credentials as service

# Any Unicode, spaces at both ends, quotes and HTML/URL metacharacters: if it leaks in
# any encoding the checks find it.
SECRET = "  Pässwörd <&\"'> 密码 🔑 %2F+/= "


def new_key() -> str:
    return Fernet.generate_key().decode()


@dataclass
class World:
    tenant_a: Tenant
    tenant_b: Tenant
    superuser: object
    admin_a: object
    operator_a: object
    viewer_a: object
    admin_b: object

    def client(self, user) -> Client:
        c = Client()
        c.force_login(user)
        return c


@pytest.fixture
def world(db) -> World:
    User = get_user_model()
    a = Tenant.objects.create(name="Alpha Corp", slug="alpha")
    b = Tenant.objects.create(name="Beta Ltd", slug="beta")

    def member(username: str, tenant: Tenant, role: str):
        user = User.objects.create_user(username, password="x-login-pw-1", is_staff=True)
        Membership.objects.create(user=user, tenant=tenant, role=role)
        return user

    return World(
        tenant_a=a,
        tenant_b=b,
        superuser=User.objects.create_superuser("root", password="x-login-pw-1"),
        admin_a=member("admin_a", a, Role.ADMIN),
        operator_a=member("operator_a", a, Role.OPERATOR),
        viewer_a=member("viewer_a", a, Role.VIEWER),
        admin_b=member("admin_b", b, Role.ADMIN),
    )


def make_credential(tenant: Tenant, name: str = "mailbox", *, password: str = SECRET,
                    username: str = "owner@example.test", deploy_as=None) -> UserCredential:
    cred = service.save_artifact(
        credential=UserCredential(tenant=tenant, name=name, username=username), password=password
    )
    if deploy_as is not None:
        cred = service.deploy(credential_id=cred.pk, user=deploy_as)
    return cred
