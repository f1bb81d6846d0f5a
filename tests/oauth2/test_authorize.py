"""Authorization code + PKCE: through the admin in headless Chromium (the test provider's
consent page approves), and headless with manage.py authorize_credential."""
from __future__ import annotations

import io
import re
import threading

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from connections.models import CredentialKind, CredentialStatus, OAuth2Authorization, PollOutcome, UserCredential
from connections.services.inbound.poll import poll

from ..browser import ARTIFACTS, launched_chromium

pytestmark = [pytest.mark.mailservers]
AUTH_CODE = CredentialKind.OAUTH2_AUTHORIZATION_CODE


def _run_command(*args):
    """authorize_credential in a thread (it waits); returns (thread, stdout, outcome)."""
    out, outcome = io.StringIO(), {}

    def run():
        try:
            call_command("authorize_credential", *args, stdout=out, stderr=io.StringIO())
            outcome["ok"] = True
        except CommandError as exc:
            outcome["error"] = str(exc)
        finally:
            from django.db import connections

            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out, outcome


def _wait_for_output(out, text: str) -> None:
    import time

    deadline = time.monotonic() + 20
    while text not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)


def _consent(url: str, user: str, *, approve: bool = True) -> str:
    """What a user does at the provider: open the URL, approve; returns the redirect (callback) URL."""
    page = requests.get(url, timeout=10)
    assert page.status_code == 200, page.text
    assert "Test provider consent" in page.text
    action = re.search(r'action="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    base = url.split("/authorize")[0]
    reply = requests.post(base + action, data={"user": user, "approve": "yes" if approve else "no"},
                          allow_redirects=False, timeout=10)
    assert reply.status_code == 302, reply.text
    return reply.headers["Location"]


@pytest.mark.browser
def test_authorize_in_the_admin_with_chromium(live_server, settings, mail_servers, mailbox, fresh_oauth2, tenant,
                                              make_oauth2_connection):
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    address, _ = mailbox
    mail_servers.append(address, [b"Subject: authorized\r\n\r\nbody\r\n"])
    client = fresh_oauth2.add_client(user=address)
    get_user_model().objects.create_superuser("operator", "op@example.com", "a-long-pass-phrase")
    base = live_server.url
    with launched_chromium() as browser:
        page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
        page.goto(f"{base}/admin/login/?next=/admin/")
        page.fill("#id_username", "operator")
        page.fill("#id_password", "a-long-pass-phrase")
        page.click("input[type=submit]")
        page.wait_for_load_state()

        page.goto(f"{base}/admin/connections/oauth2authorizationcode/add/")
        page.select_option("#id_tenant", str(tenant.pk))
        page.fill("#id_name", "gmail-support")
        page.fill("#id_username", address)
        page.select_option("#id_provider", "generic")
        page.fill("#id_issuer", fresh_oauth2.url)
        page.fill("#id_client_id", client.client_id)
        page.fill("#id_scope", "mail offline_access")
        page.fill("#id_new_password", client.client_secret)
        page.fill("#id_new_password_confirmation", client.client_secret)
        page.click("input[name=_continue]")
        page.wait_for_selector("button.tm-deploy")
        page.click("button.tm-deploy")
        page.wait_for_selector("#oauth2-authorize")
        callback = page.text_content("#oauth2-callback")
        assert f"{base}/oauth2/callback/" in callback
        cred = UserCredential.objects.get(name="gmail-support")
        assert cred.kind == AUTH_CODE and cred.status == CredentialStatus.UNAUTHORIZED

        page.click("#oauth2-authorize")  # -> the provider's consent page
        page.wait_for_selector("#approve")
        assert page.url.startswith(fresh_oauth2.url + "/authorize")
        assert "code_challenge_method=S256" in page.url and "state=" in page.url
        page.click("#approve")  # -> back to our callback
        page.wait_for_selector("#oauth2-result")
        assert "is authorized" in page.text_content("#oauth2-result")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "oauth2-authorized.png"), full_page=True)
        page.click("#back")
        page.wait_for_selector("#oauth2-authorize")
        body = page.content()
        assert "Authorized v1" in body and "Re-authorize" in body
        for secret in (client.client_secret, UserCredential.objects.get(pk=cred.pk).refresh_token):
            assert secret not in body

    cred.refresh_from_db()
    assert cred.status == CredentialStatus.AUTHORIZED and cred.refresh_token
    connection = make_oauth2_connection(cred, protocol="imap")
    result = poll(connection_id=connection.pk)
    assert result.outcome == PollOutcome.SUCCESS, result.error
    assert result.stored == 1


def test_authorize_credential_command(live_server, mail_servers, mailbox, fresh_oauth2, make_oauth2_credential,
                                      make_oauth2_connection, tenant):
    address, _ = mailbox
    cred, client = make_oauth2_credential(address, kind=AUTH_CODE)
    assert cred.status == CredentialStatus.UNAUTHORIZED
    thread, out, outcome = _run_command(tenant.slug, cred.name, "--base-url", live_server.url, "--timeout", "30")
    _wait_for_output(out, "approve:\nhttp")
    url = out.getvalue().split("approve:")[-1].strip().splitlines()[0]
    callback = _consent(url, address)
    assert callback.startswith(live_server.url + "/oauth2/callback/?code=")
    page = requests.get(callback, timeout=10)
    assert page.status_code == 200 and "is authorized" in page.text
    thread.join(30)
    assert outcome == {"ok": True}, outcome
    assert "Authorized" in out.getvalue()
    cred.refresh_from_db()
    assert cred.status == CredentialStatus.AUTHORIZED
    connection = make_oauth2_connection(cred, protocol="pop3")
    assert poll(connection_id=connection.pk).outcome == PollOutcome.SUCCESS
    # The state is single use.
    again = requests.get(callback, timeout=10)
    assert again.status_code == 400 and "state does not match" in again.text


def test_declined_consent_is_reported(live_server, mailbox, fresh_oauth2, make_oauth2_credential):
    from connections.services.oauth2 import authorize

    address, _ = mailbox
    cred, client = make_oauth2_credential(address, kind=AUTH_CODE)
    url = authorize.start(credential_id=cred.pk, redirect_uri=live_server.url + "/oauth2/callback/")
    callback = _consent(url, address, approve=False)
    page = requests.get(callback, timeout=10)
    assert page.status_code == 400 and "access_denied" in page.text
    assert OAuth2Authorization.objects.get(credential=cred).error.startswith("OAuth2: the provider refused")
    cred.refresh_from_db()
    assert cred.status == CredentialStatus.UNAUTHORIZED and cred.refresh_token is None


def test_authorize_credential_with_the_device_grant(mailbox, fresh_oauth2, make_oauth2_credential,
                                                    make_oauth2_connection, tenant):
    address, _ = mailbox
    cred, client = make_oauth2_credential(address, kind=AUTH_CODE)
    thread, out, outcome = _run_command(tenant.slug, cred.name, "--device", "--timeout", "30")
    _wait_for_output(out, "enter the code")
    match = re.search(r"Open (\S+) and enter the code (\S+)", out.getvalue())
    assert match and match.group(1) == fresh_oauth2.url + "/device"
    fresh_oauth2.approve_device(match.group(2), address)
    thread.join(40)
    assert outcome == {"ok": True}, (outcome, out.getvalue())
    cred.refresh_from_db()
    assert cred.status == CredentialStatus.AUTHORIZED and cred.refresh_token
    connection = make_oauth2_connection(cred, protocol="imap")
    assert poll(connection_id=connection.pk).outcome == PollOutcome.SUCCESS
