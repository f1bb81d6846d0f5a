"""test_connection, poll_mailbox and send_message work with OAuth2 connections as with passwords;
polls and sends keep working across token expiries through the real Celery worker too."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from connections.models import CredentialKind, UserCredential

pytestmark = pytest.mark.mailservers


def test_commands_with_oauth2(mail_servers, mailbox, make_oauth2_credential, make_oauth2_connection, fresh_oauth2,
                              tenant):
    address, _ = mailbox
    fresh_oauth2.expires_in = 2
    cc, _ = make_oauth2_credential(address)
    ac, ac_client = make_oauth2_credential(address, kind=CredentialKind.OAUTH2_AUTHORIZATION_CODE)
    UserCredential.objects.filter(pk=ac.pk).update(refresh_token=fresh_oauth2.grant_refresh_token(ac_client, user=address))
    imap = make_oauth2_connection(cc, protocol="imap")
    smtp = make_oauth2_connection(ac, protocol="smtp", protection="ssl_tls")

    out = io.StringIO()
    call_command("test_connection", tenant.slug, imap.name, "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["ok"], report["summary"]
    assert [s["name"] for s in report["steps"]][:2] == ["credential", "token"]

    out = io.StringIO()  # the text output shows the token step too
    call_command("test_connection", tenant.slug, imap.name, stdout=out)
    assert "token" in out.getvalue() and "PASS" in out.getvalue()

    out = io.StringIO()
    call_command("send_message", tenant.slug, smtp.name, "--to", address, "--subject", "oauth2 cli", "--body", "hi",
                 "--now", stdout=out)
    mail_servers.wait_for_messages(address)

    out = io.StringIO()
    call_command("poll_mailbox", tenant.slug, imap.name, "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["outcome"] == "success" and result["stored"] == 1


def test_polls_through_the_celery_worker_across_token_expiries(tenantmail_worker, mail_servers, mailbox,
                                                               make_oauth2_credential, make_oauth2_connection,
                                                               fresh_oauth2):
    import time

    from connections.models import OAuth2Token, PollRun
    from connections.tasks import poll_connection

    from ..celery_worker import wait_until

    address, _ = mailbox
    fresh_oauth2.expires_in = 2
    cred, client = make_oauth2_credential(address)
    connection = make_oauth2_connection(cred, protocol="imap")
    before = fresh_oauth2.token_requests["client_credentials"]
    for round_ in range(1, 4):
        mail_servers.append(address, [f"Subject: round {round_}\r\n\r\nbody\r\n".encode()])
        poll_connection.delay(connection.pk, "test")
        wait_until(lambda: PollRun.objects.filter(connection=connection, outcome="success").count() == round_,
                   timeout=30, message=f"poll {round_} succeeded")
        wait_until(lambda: OAuth2Token.objects.get(credential=cred).refresh_at.timestamp() < time.time(),
                   timeout=10, message="token due for refresh")
    assert fresh_oauth2.token_requests["client_credentials"] == before + 3  # one per expiry, no more
    assert connection.messages.count() == 3
