"""Fixtures of the inbound tests: a tenant, deployed credentials, inbound connections on the
real Dovecot of `tests/mailservers.py`."""
from __future__ import annotations

import uuid

import pytest

from connections.models import InboundConnection, Tenant, UserCredential
from connections.services.setup import credentials as credential_service


@pytest.fixture
def tenant(db) -> Tenant:
    slug = f"t-{uuid.uuid4().hex[:8]}"
    return Tenant.objects.create(name=f"Tenant {slug}", slug=slug)


@pytest.fixture
def make_credential(tenant):
    """make(username, password) -> the name of a deployed User Credentials artifact."""

    def make(username: str = "nobody@example.test", password: str = "secret-pw") -> str:
        name = f"cred-{uuid.uuid4().hex[:8]}"
        cred = UserCredential(tenant=tenant, name=name, username=username)
        credential_service.save_artifact(credential=cred, password=password)
        credential_service.deploy(credential_id=cred.pk, user=None)
        return name

    return make


@pytest.fixture
def make_inbound(tenant, mail_servers, make_credential):
    """make(address, password, protocol="imap", **fields) -> InboundConnection (deployed credential)."""

    def make(address: str, password: str, *, protocol: str = "imap", protection: str = "ssl_tls",
             authentication: str = "plain", **fields) -> InboundConnection:
        cred_name = make_credential(address, password)
        ms = mail_servers.mail_settings(protocol=protocol, protection=protection, authentication=authentication,
                                        username=address)
        values = dict(
            tenant=tenant, name=f"in-{uuid.uuid4().hex[:8]}", protocol=protocol, host=ms.host, port=ms.port,
            protection=protection, authentication=authentication, credential_name=cred_name,
            trusted_ca=ms.trusted_ca, timeout=10,
        )
        values.update(fields)
        return InboundConnection.objects.create(**values)

    return make


@pytest.fixture
def conn(tenant, make_credential) -> InboundConnection:
    """An IMAP connection to store mails into directly (no server involved)."""
    return InboundConnection.objects.create(tenant=tenant, name="st", host="h", credential_name=make_credential())
