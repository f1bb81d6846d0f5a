"""rotate_credentials covers the OAuth2 secrets: client secret, refresh token, cached access token."""
from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from connections.models import CredentialKind, OAuth2Token, UserCredential
from connections.services.oauth2 import tokens

pytestmark = pytest.mark.mailservers


def test_rotation_keeps_every_oauth2_secret(settings, mailbox, make_oauth2_credential, fresh_oauth2):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FERNET_KEYS = [old]
    address, _ = mailbox
    cred, client = make_oauth2_credential(address, kind=CredentialKind.OAUTH2_AUTHORIZATION_CODE)
    grant = fresh_oauth2.grant_refresh_token(client, user=address)
    UserCredential.objects.filter(pk=cred.pk).update(refresh_token=grant)
    token = tokens.access_token(credential_id=cred.pk).value
    refresh = UserCredential.objects.get(pk=cred.pk).refresh_token  # rotated by the provider
    settings.FERNET_KEYS = [new, old]
    call_command("rotate_credentials")
    settings.FERNET_KEYS = [new]  # the old key is gone: everything still decrypts
    cred = UserCredential.objects.get(pk=cred.pk)
    assert cred.deployed_password == client.client_secret and cred.refresh_token == refresh
    assert OAuth2Token.objects.get(credential=cred).access_token == token
    assert tokens.access_token(credential_id=cred.pk).source == "cache"
