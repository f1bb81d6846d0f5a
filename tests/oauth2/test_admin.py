"""The admin pages of the OAuth2 kinds: create (validated, write-only secret), deploy, used by;
provider endpoints."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from connections.models import CredentialKind, CredentialStatus, UserCredential
from connections.services.oauth2 import providers

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


@pytest.fixture
def browser(db):
    get_user_model().objects.create_superuser("root", "r@example.com", "a-long-pass-phrase")
    c = Client()
    c.login(username="root", password="a-long-pass-phrase")
    return c


def _post(browser, tenant, **changes):
    data = {"tenant": tenant.pk, "name": "m365-app", "description": "", "username": "orders@acme.example",
            "token_url": "https://login.microsoftonline.com/contoso/oauth2/v2.0/token", "client_id": "0a1b2c3d",
            "scope": "https://outlook.office365.com/.default", "new_password": "s3cret~client",
            "new_password_confirmation": "s3cret~client", "_continue": "1"}
    data.update(changes)
    return browser.post("/admin/connections/oauth2clientcredentials/add/", data)


def test_create_deploy_and_never_show_the_secret(browser):
    from connections.models import Tenant

    tenant = Tenant.objects.create(name="ACME", slug="acme")
    refused = _post(browser, tenant, token_url="http://login.example/token")
    assert refused.status_code == 200 and "not loopback" in refused.content.decode()
    assert not UserCredential.objects.exists()
    created = _post(browser, tenant)
    assert created.status_code == 302, created.content.decode()[:2000]
    cred = UserCredential.objects.get(name="m365-app")
    assert cred.kind == CredentialKind.OAUTH2_CLIENT_CREDENTIALS and cred.status == CredentialStatus.STORED
    assert cred.oauth2["client_id"] == "0a1b2c3d" and cred.password == "s3cret~client"
    page = browser.get(f"/admin/connections/oauth2clientcredentials/{cred.pk}/change/").content.decode()
    assert "s3cret~client" not in page and "Deploy" in page and "0a1b2c3d" in page
    browser.post(f"/admin/connections/oauth2clientcredentials/{cred.pk}/deploy/")
    cred.refresh_from_db()
    assert cred.version == 1 and cred.status == CredentialStatus.DEPLOYED
    assert cred.deployed_oauth2["token_url"].startswith("https://login.microsoftonline.com/")
    # The User Credentials list shows only user/password artifacts; each kind has its page.
    assert browser.get("/admin/connections/usercredential/").context["cl"].result_count == 0
    assert browser.get("/admin/connections/oauth2clientcredentials/").context["cl"].result_count == 1
    assert browser.get("/admin/connections/oauth2authorizationcode/").context["cl"].result_count == 0


def test_provider_endpoints():
    ms = providers.endpoints({"provider": "microsoft", "directory": "contoso.example"})
    assert ms.token_url == "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token"
    assert ms.authorization_url.endswith("/contoso.example/oauth2/v2.0/authorize")
    assert ms.device_url.endswith("/devicecode")
    google = providers.endpoints({"provider": "google"})
    assert google.token_url == "https://oauth2.googleapis.com/token" and google.device_url
    generic = providers.endpoints({"provider": "generic", "authorization_url": "https://id.example/auth",
                                   "token_url": "https://id.example/token"})
    assert generic.authorization_url == "https://id.example/auth" and not generic.device_url
    assert providers.default_scope({"provider": "google"}) == "https://mail.google.com/"
    assert "offline_access" in providers.default_scope({"provider": "microsoft"})
    problems = dict(providers.settings_problems("oauth2_authorization_code", {"provider": "microsoft", "client_id": "x"}))
    assert "directory" in problems
