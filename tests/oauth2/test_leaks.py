"""No client secret, access token or refresh token in logs, exception text, poll history,
connectivity reports, admin pages, exports or command output - in any encoding."""
from __future__ import annotations

import io
import logging

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from connections.models import CredentialKind, PollRun, UserCredential
from connections.services.inbound.poll import poll
from connections.services.setup import config
from connections.services.setup.connectivity import run_connectivity_test

from ..setup.leaks import leaks

pytestmark = pytest.mark.mailservers


def test_no_secret_or_token_leaves(caplog, mail_servers, mailbox, make_oauth2_credential, make_oauth2_connection,
                                   fresh_oauth2, tenant):
    caplog.set_level(logging.DEBUG)
    address, _ = mailbox
    mail_servers.append(address, [b"Subject: x\r\n\r\nbody\r\n"])
    cc, cc_client = make_oauth2_credential(address)
    ac, ac_client = make_oauth2_credential(address, kind=CredentialKind.OAUTH2_AUTHORIZATION_CODE)
    UserCredential.objects.filter(pk=ac.pk).update(refresh_token=fresh_oauth2.grant_refresh_token(ac_client, user=address))
    imap = make_oauth2_connection(cc, protocol="imap")
    pop = make_oauth2_connection(ac, protocol="pop3")
    fresh_oauth2.expires_in = 1  # several tokens, and a rotated refresh token
    texts = []
    for _ in range(2):
        for conn in (imap, pop):
            result = poll(connection_id=conn.pk)
            texts.append(str(result))
    fresh_oauth2.revoke_all(cc_client.client_id)
    texts.append(str(poll(connection_id=imap.pk)))
    for kind, conn in (("inbound", imap), ("inbound", pop)):
        texts.append(str(run_connectivity_test(kind=kind, connection_id=conn.pk).report))
    fresh_oauth2.token_status = 503
    UserCredential.objects.filter(pk=cc.pk).update()  # (no change)
    texts.append(str(poll(connection_id=imap.pk)))
    fresh_oauth2.token_status = None
    texts += [r.error for r in PollRun.objects.all()]
    texts.append(config.dump(config.export()))
    out = io.StringIO()
    call_command("test_connection", tenant.slug, imap.name, "--json", stdout=out, stderr=out)
    texts.append(out.getvalue())
    get_user_model().objects.create_superuser("root", "r@example.com", "a-long-pass-phrase")
    browser = Client()
    browser.login(username="root", password="a-long-pass-phrase")
    for url in (f"/admin/connections/oauth2clientcredentials/{cc.pk}/change/",
                f"/admin/connections/oauth2authorizationcode/{ac.pk}/change/",
                "/admin/connections/oauth2clientcredentials/", "/admin/connections/oauth2authorizationcode/",
                f"/admin/connections/inboundconnection/{imap.pk}/change/"):
        page = browser.get(url)
        assert page.status_code == 200, url
        texts.append(page.content.decode())
    # The product's log records (the test provider in this process logs on its own loggers).
    texts += [f"{r.name}: {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
              if not r.name.startswith(("werkzeug", "authlib.oauth2.rfc", "flask"))]
    ac.refresh_from_db()
    secrets = [cc_client.client_secret, ac_client.client_secret, ac.refresh_token]
    secrets += [t.access_token for t in fresh_oauth2.tokens if t.client_id in (cc_client.client_id, ac_client.client_id)]
    secrets += [t.refresh_token for t in fresh_oauth2.tokens if t.client_id == ac_client.client_id and t.refresh_token]
    assert len(secrets) > 6
    everything = "\n".join(texts)
    found = {s[:6] + "…": [t[:300] for t in texts if leaks(t, s)] for s in secrets if leaks(everything, s)}
    assert found == {}
