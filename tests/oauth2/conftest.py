"""OAuth2 artifacts and connections on the real Dovecot/Postfix, tokens from the real test
authorization server (tests/oauth2_server.py)."""
from __future__ import annotations

import uuid

import pytest

from connections.models import CredentialKind, InboundConnection, OutboundConnection, Tenant, UserCredential
from connections.services.setup import credentials as credential_service


@pytest.fixture
def tenant(transactional_db) -> Tenant:
    slug = f"t-{uuid.uuid4().hex[:8]}"
    return Tenant.objects.create(name=f"Tenant {slug}", slug=slug)


@pytest.fixture
def make_oauth2_credential(tenant, fresh_oauth2):
    """make(address, kind=..., **oauth2) -> (UserCredential deployed, test-server Client)."""

    def make(address: str, *, kind: str = CredentialKind.OAUTH2_CLIENT_CREDENTIALS, refresh_token: str | None = None,
             deploy: bool = True, **settings):
        client = fresh_oauth2.add_client(user=address)
        values = {"token_url": fresh_oauth2.token_url, "client_id": client.client_id, "scope": "mail"}
        if kind == CredentialKind.OAUTH2_AUTHORIZATION_CODE:
            values = {"provider": "generic", "issuer": fresh_oauth2.url, "client_id": client.client_id,
                      "scope": "mail offline_access"}
        values.update(settings)
        cred = UserCredential(tenant=tenant, name=f"oa-{uuid.uuid4().hex[:8]}", username=address, kind=kind,
                              oauth2=values)
        credential_service.save_artifact(credential=cred, password=client.client_secret)
        if refresh_token:
            UserCredential.objects.filter(pk=cred.pk).update(refresh_token=refresh_token)
        if deploy:
            cred = credential_service.deploy(credential_id=cred.pk, user=None, source="test")
        return cred, client

    return make


@pytest.fixture
def make_oauth2_connection(tenant, mail_servers):
    def make(cred, *, protocol: str = "imap", protection: str = "ssl_tls", **fields):
        ms = mail_servers.mail_settings(protocol=protocol, protection=protection, authentication="oauth2",
                                        username=cred.username)
        values = dict(tenant=tenant, name=f"c-{uuid.uuid4().hex[:8]}", host=ms.host, port=ms.port,
                      protection=protection, authentication="oauth2", credential_name=cred.name,
                      trusted_ca=ms.trusted_ca, timeout=10)
        values.update(fields)
        if protocol == "smtp":
            values.setdefault("default_from", cred.username)
            return OutboundConnection.objects.create(**values)
        return InboundConnection.objects.create(protocol=protocol, **values)

    return make
