"""The credentials tests' world (two tenants, one user per role; the `world` fixture in
conftest.py) and helpers for real Fernet key lists and artifacts."""
from __future__ import annotations

from dataclasses import dataclass

from cryptography.fernet import Fernet
from django.test import Client

from connections.models import Tenant, UserCredential
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


def make_credential(tenant: Tenant, name: str = "mailbox", *, password: str = SECRET,
                    username: str = "owner@example.test", deploy_as=None) -> UserCredential:
    cred = service.save_artifact(
        credential=UserCredential(tenant=tenant, name=name, username=username), password=password
    )
    if deploy_as is not None:
        cred = service.deploy(credential_id=cred.pk, user=deploy_as)
    return cred
