"""Configuration as code for the OAuth2 kinds: the contract of issue 15, export without secrets."""
from __future__ import annotations

import pytest
import yaml

from connections.models import CredentialKind, CredentialStatus, InboundConnection, UserCredential
from connections.services.setup import config
from connections.services.oauth2 import tokens

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

CONTRACT = """
tenants:
  - slug: acme
    name: ACME
    credentials:
      - name: m365-app
        kind: oauth2_client_credentials
        user: orders@acme.example
        token_url: https://login.example/oauth2/v2.0/token
        client_id: 0a1b2c3d
        client_secret_env: ACME_M365_SECRET
        scope: "https://outlook.office365.com/.default"
        deploy: true
      - name: gmail-support
        kind: oauth2_authorization_code
        provider: google                  # microsoft | google | generic
        user: support@acme.example
        client_id: 1234.apps.example
        client_secret_env: ACME_GOOGLE_SECRET
        scope: "https://mail.google.com/"
        refresh_token_env: ACME_GOOGLE_REFRESH   # optional: import an existing grant
        deploy: true
      - name: plain
        user: plain@acme.example
        password_env: ACME_PLAIN_PASSWORD
        deploy: true
    inbound:
      - name: orders
        host: outlook.office365.com
        authentication: oauth2
        credential: m365-app
      - name: support
        protocol: pop3
        host: pop.gmail.com
        authentication: oauth2
        sasl_mechanism: xoauth2
        credential: gmail-support
"""
SECRETS = {"ACME_M365_SECRET": "m365-Secret~value.123", "ACME_GOOGLE_SECRET": "GOCSPX-google-secret",
           "ACME_GOOGLE_REFRESH": "1//refresh-token-value", "ACME_PLAIN_PASSWORD": "plain-pw-42"}


def apply(text: str, env=SECRETS) -> config.Plan:
    return config.apply(config.load(text), environ=env)


def test_the_contract_applies_exports_and_round_trips():
    plan = apply(CONTRACT)
    assert plan.applied
    m365 = UserCredential.objects.get(name="m365-app")
    assert m365.kind == CredentialKind.OAUTH2_CLIENT_CREDENTIALS and m365.status == CredentialStatus.DEPLOYED
    assert m365.deployed_oauth2["token_url"] == "https://login.example/oauth2/v2.0/token"
    assert m365.deployed_password == SECRETS["ACME_M365_SECRET"]
    gmail = UserCredential.objects.get(name="gmail-support")
    assert gmail.kind == CredentialKind.OAUTH2_AUTHORIZATION_CODE
    assert gmail.refresh_token == SECRETS["ACME_GOOGLE_REFRESH"]
    assert gmail.status == CredentialStatus.AUTHORIZED
    assert UserCredential.objects.get(name="plain").kind == CredentialKind.USER
    support = InboundConnection.objects.get(name="support")
    assert support.authentication == "oauth2" and support.sasl_mechanism == "xoauth2"

    assert apply(CONTRACT).empty  # nothing changes the second time
    exported = config.dump(config.export()) if hasattr(config, "dump") else yaml.safe_dump(config.export())
    for secret in SECRETS.values():
        assert secret not in exported
    data = yaml.safe_load(exported)
    creds = {c["name"]: c for c in data["tenants"][0]["credentials"]}
    assert creds["m365-app"]["client_secret_env"] == "ACME_M365_SECRET" and "password_env" not in creds["m365-app"]
    assert creds["gmail-support"]["refresh_token_env"] == "ACME_GOOGLE_REFRESH"
    assert creds["gmail-support"]["provider"] == "google"
    assert creds["plain"]["password_env"] == "ACME_PLAIN_PASSWORD" and "kind" not in creds["plain"]
    # The export applies to the same database without a change.
    assert config.apply(data, environ=SECRETS).empty


def test_http_token_url_refused_unless_loopback():
    bad = CONTRACT.replace("https://login.example/oauth2", "http://login.example/oauth2")
    with pytest.raises(config.ConfigValidationError) as info:
        apply(bad)
    assert "credentials[0].token_url: token_url uses http:// to a host that is not loopback" in str(info.value)
    ok = CONTRACT.replace("https://login.example/oauth2", "http://127.0.0.1:9/oauth2")
    assert apply(ok).applied


def test_kind_rules_and_missing_secret_name():
    text = CONTRACT.replace("        client_secret_env: ACME_M365_SECRET\n", "").replace(
        "        provider: google ", "        provider: yahoo ")
    with pytest.raises(config.ConfigValidationError) as info:
        apply(text)
    message = str(info.value)
    assert "credentials[0].client_secret_env: required" in message
    assert "credentials[1].provider: provider must be one of microsoft, google, generic" in message


def test_reapplying_changed_settings_redeploys():
    apply(CONTRACT)
    cred = UserCredential.objects.get(name="m365-app")
    assert cred.version == 1
    plan = apply(CONTRACT.replace("client_id: 0a1b2c3d", "client_id: 9f8e7d"))
    assert any(c.action == "deploy" and c.name == "m365-app" for c in plan.changes)
    cred.refresh_from_db()
    assert cred.version == 2 and cred.deployed_oauth2["client_id"] == "9f8e7d"
    assert tokens.margin(60) == 12.0
