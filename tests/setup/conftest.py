"""Fixtures of the setup tests: a tenant, deployed credentials, connections pointing at the
real Dovecot/Postfix of tests/mailservers.py (connectivity), the credentials tests' world,
and plain static files for the checklist's admin pages."""
from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model

from connections.models import InboundConnection, Membership, OutboundConnection, Role, Tenant, UserCredential
from connections.services.setup import credentials as credential_service

from .credentials_world import World


@pytest.fixture
def tenant(db) -> Tenant:
    slug = f"t-{uuid.uuid4().hex[:8]}"
    return Tenant.objects.create(name=f"Tenant {slug}", slug=slug)


@pytest.fixture
def make_credential(tenant):
    """make_credential(username, password, name=None, tenant=None) -> deployed UserCredential."""

    def make(username: str, password: str, *, name: str | None = None, tenant_obj: Tenant | None = None,
             deploy_times: int = 1) -> UserCredential:
        cred = UserCredential(tenant=tenant_obj or tenant, name=name or f"cred-{uuid.uuid4().hex[:8]}",
                              username=username)
        credential_service.save_artifact(credential=cred, password=password)
        for _ in range(deploy_times):
            cred = credential_service.deploy(credential_id=cred.pk, user=None)
        return cred

    return make


@pytest.fixture
def make_connection(tenant, mail_servers, make_credential):
    """make_connection(protocol, protection, authentication, address=, password=, listener=, **fields).

    An inbound (imap/pop3) or outbound (smtp) connection at the right fixture listener with a
    deployed credential (none for authentication "none"), trusting the run's CA.
    """

    def make(protocol: str = "imap", protection: str = "ssl_tls", authentication: str = "plain", *,
             address: str | None = None, password: str | None = None, listener: str | None = None,
             credential_name: str | None = None, tenant_obj: Tenant | None = None, **fields):
        if address is None:
            address, password = mail_servers.add_user()
        owner = tenant_obj or tenant
        if credential_name is None and authentication != "none":
            credential_name = make_credential(address, password, tenant_obj=owner).name
        ms = mail_servers.mail_settings(protocol=protocol, protection=protection, authentication=authentication,
                                        username=address, listener=listener)
        values = dict(
            tenant=owner, name=f"{protocol}-{uuid.uuid4().hex[:8]}", host=ms.host, port=ms.port,
            protection=protection, authentication=authentication, credential_name=credential_name or "",
            trusted_ca=ms.trusted_ca, timeout=10,
        )
        values.update(fields)
        if protocol == "smtp":
            values.setdefault("default_from", address)
            return OutboundConnection.objects.create(**values)
        return InboundConnection.objects.create(protocol=protocol, **values)

    return make


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


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    # The manifest storage needs `collectstatic`; the admin pages under test only need URLs.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
