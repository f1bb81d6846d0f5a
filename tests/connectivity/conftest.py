"""Fixtures of the connectivity-test tests: a tenant, deployed credentials, connections
pointing at the real Dovecot/Postfix of tests/mailservers.py."""
from __future__ import annotations

import uuid

import pytest

from connections.models import InboundConnection, OutboundConnection, Tenant, UserCredential
from connections.services.setup import credentials as credential_service


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
