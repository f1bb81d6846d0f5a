"""Token service end to end: OAuth2 artifacts -> tokens from the real test authorization server ->
polls and sends through the real Dovecot/Postfix, which introspect every token."""
from __future__ import annotations

import threading
import time

import pytest
from django.db import connections as db_connections

from connections.models import CredentialKind, CredentialStatus, OAuth2Token, PollOutcome, UserCredential
from connections.services.inbound.poll import poll
from connections.services.outbound import enqueue, sending
from connections.services.setup import checklist
from connections.services.setup.connectivity import run_connectivity_test
from connections.services.oauth2 import providers, tokens
from connections.services.oauth2.errors import OAuth2Error

pytestmark = pytest.mark.mailservers

AUTH_CODE = CredentialKind.OAUTH2_AUTHORIZATION_CODE


def _wait_until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_client_credentials_poll(mail_servers, mailbox, make_oauth2_credential, make_oauth2_connection, protocol):
    address, _ = mailbox
    mail_servers.append(address, [b"Subject: one\r\n\r\nbody\r\n", b"Subject: two\r\n\r\nbody\r\n"])
    cred, _client = make_oauth2_credential(address)
    connection = make_oauth2_connection(cred, protocol=protocol)
    result = poll(connection_id=connection.pk, trigger="test")
    assert result.outcome == PollOutcome.SUCCESS, result.error
    assert result.stored == 2


def test_client_credentials_send(mail_servers, mailbox, make_oauth2_credential, make_oauth2_connection):
    address, _ = mailbox
    cred, _client = make_oauth2_credential(address)
    connection = make_oauth2_connection(cred, protocol="smtp", protection="starttls_mandatory")
    message = enqueue.enqueue(connection_id=connection.pk, to=[address], subject="via OAuth2", text="hello",
                              dispatch=False)
    report = sending.send_due(connection_id=connection.pk, message_ids=[message.pk])
    assert report.error in (None, ""), report.error
    assert b"via OAuth2" in b"".join(mail_servers.wait_for_messages(address).values())


def test_connectivity_test_has_a_token_step(mailbox, make_oauth2_credential, make_oauth2_connection, fresh_oauth2):
    address, _ = mailbox
    cred, _client = make_oauth2_credential(address)
    connection = make_oauth2_connection(cred, protocol="imap")
    result = run_connectivity_test(kind="inbound", connection_id=connection.pk)
    assert result.ok, result.summary
    names = [s["name"] for s in result.steps]
    assert names[:2] == ["credential", "token"]
    token = result.steps[1]
    assert token["detail"]["source"] == "provider" and token["duration_ms"] > 0
    auth = next(s for s in result.steps if s["name"] == "auth")
    assert auth["detail"]["mechanism"] == "OAUTHBEARER"


def test_connectivity_test_explains_the_provider_error(mailbox, make_oauth2_credential, make_oauth2_connection,
                                                       fresh_oauth2):
    address, _ = mailbox
    cred, client = make_oauth2_credential(address, scope="not-allowed")
    client.scope = "mail"
    UserCredential.objects.filter(pk=cred.pk).update(deployed_oauth2={**cred.deployed_oauth2, "client_id": "nobody"})
    connection = make_oauth2_connection(cred, protocol="imap")
    result = run_connectivity_test(kind="inbound", connection_id=connection.pk)
    assert not result.ok
    step = result.failed_step
    assert step["name"] == "token" and "invalid_client" in step["message"]
    assert "client secret" in step["hint"]
    assert UserCredential.objects.get(pk=cred.pk).status == CredentialStatus.ERROR


def test_token_is_cached_and_refreshed_before_expiry(mail_servers, mailbox, make_oauth2_credential,
                                                     make_oauth2_connection, fresh_oauth2):
    address, _ = mailbox
    fresh_oauth2.expires_in = 3
    cred, client = make_oauth2_credential(address)
    connection = make_oauth2_connection(cred, protocol="imap")
    before = fresh_oauth2.token_requests["client_credentials"]
    assert poll(connection_id=connection.pk).outcome == PollOutcome.SUCCESS
    assert poll(connection_id=connection.pk).outcome == PollOutcome.SUCCESS
    assert fresh_oauth2.token_requests["client_credentials"] == before + 1  # cached
    row = OAuth2Token.objects.get(credential=cred)
    # Refreshed a fifth of the lifetime before expiry (proportional margin).
    assert 2.0 <= (row.refresh_at - row.obtained_at).total_seconds() <= 2.6
    first = row.access_token
    for _ in range(3):  # across several expiries, nobody touching anything
        _wait_until(lambda: OAuth2Token.objects.get(credential=cred).refresh_at.timestamp() < time.time())
        assert poll(connection_id=connection.pk).outcome == PollOutcome.SUCCESS
    assert fresh_oauth2.token_requests["client_credentials"] == before + 4
    assert OAuth2Token.objects.get(credential=cred).access_token != first


def test_authorization_code_refresh_rotates_the_refresh_token(mail_servers, mailbox, make_oauth2_credential,
                                                              make_oauth2_connection, fresh_oauth2):
    address, _ = mailbox
    cred, client = make_oauth2_credential(address, kind=AUTH_CODE, deploy=False)
    granted = fresh_oauth2.grant_refresh_token(client, user=address)
    UserCredential.objects.filter(pk=cred.pk).update(refresh_token=granted)
    from connections.services.setup import credentials as credential_service

    cred = credential_service.deploy(credential_id=cred.pk, user=None, source="test")
    assert cred.status == CredentialStatus.AUTHORIZED
    fresh_oauth2.expires_in = 2
    connection = make_oauth2_connection(cred, protocol="pop3")
    seen = {granted}
    for _ in range(3):
        assert poll(connection_id=connection.pk).outcome == PollOutcome.SUCCESS
        stored = UserCredential.objects.get(pk=cred.pk).refresh_token
        assert stored and stored not in seen  # rotated, and the new one was kept
        seen.add(stored)
        _wait_until(lambda: OAuth2Token.objects.get(credential=cred).refresh_at.timestamp() < time.time())
    # The old refresh token no longer works at the provider (rotation revoked it).
    assert all(t.revoked for t in fresh_oauth2.tokens if t.refresh_token == granted)


def test_invalid_grant_marks_error_and_reauthorize(mailbox, make_oauth2_credential, make_oauth2_connection,
                                                   fresh_oauth2):
    address, _ = mailbox
    cred, client = make_oauth2_credential(address, kind=AUTH_CODE, refresh_token="never-issued")
    connection = make_oauth2_connection(cred, protocol="imap")
    result = poll(connection_id=connection.pk)
    assert result.outcome == PollOutcome.FAILED
    assert "invalid_grant" in result.error and "Re-authorize" in result.error
    cred.refresh_from_db()
    assert cred.status == CredentialStatus.ERROR and cred.refresh_token is None
    item = checklist.evaluation(connection=connection).item("oauth2_authorized")
    assert item.state == "fail" and item.link_label == "Re-authorize" and "invalid_grant" in item.detail
    assert item.link == f"/admin/connections/oauth2authorizationcode/{cred.pk}/change/"
    # No refresh token any more: the next poll says so without asking the provider.
    before = sum(fresh_oauth2.token_requests.values())
    again = poll(connection_id=connection.pk)
    assert "not authorized" in again.error and sum(fresh_oauth2.token_requests.values()) == before


def test_concurrent_refresh_is_single_flight(mailbox, make_oauth2_credential, fresh_oauth2):
    address, _ = mailbox
    cred, client = make_oauth2_credential(address)
    fresh_oauth2.token_delay = 0.3  # every waiter arrives while the request is in flight
    before = fresh_oauth2.token_requests["client_credentials"]
    results, errors, start = [], [], threading.Barrier(20)

    def worker():
        try:
            start.wait()
            results.append(tokens.access_token(credential_id=cred.pk).value)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)
        finally:
            db_connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 20 and len(set(results)) == 1
    assert fresh_oauth2.token_requests["client_credentials"] == before + 1


def test_token_revoked_mid_poll_gets_a_new_one(mail_servers, mailbox, make_oauth2_credential,
                                               make_oauth2_connection, fresh_oauth2):
    address, _ = mailbox
    mail_servers.append(address, [b"Subject: a\r\n\r\nbody\r\n"])
    cred, client = make_oauth2_credential(address)
    connection = make_oauth2_connection(cred, protocol="imap")
    assert poll(connection_id=connection.pk).outcome == PollOutcome.SUCCESS
    fresh_oauth2.revoke_all(client.client_id)  # the cached token is still "valid" by its expiry
    mail_servers.append(address, [b"Subject: b\r\n\r\nbody\r\n"])
    result = poll(connection_id=connection.pk)
    assert result.outcome == PollOutcome.SUCCESS, result.error
    assert result.stored == 1
    assert fresh_oauth2.token_requests["client_credentials"] >= 2


def test_provider_down_is_retried_then_reported(mailbox, make_oauth2_credential, make_oauth2_connection,
                                                fresh_oauth2):
    address, _ = mailbox
    cred, client = make_oauth2_credential(address)
    connection = make_oauth2_connection(cred, protocol="imap")
    fresh_oauth2.token_status = 503
    before = fresh_oauth2.token_requests["client_credentials"]
    result = poll(connection_id=connection.pk)
    assert result.outcome == PollOutcome.FAILED
    assert "HTTP 503" in result.error and "3 attempts" in result.error
    assert fresh_oauth2.token_requests["client_credentials"] == before + tokens.ATTEMPTS
    assert UserCredential.objects.get(pk=cred.pk).status == CredentialStatus.DEPLOYED  # not the credential's fault
    fresh_oauth2.token_status = None
    assert poll(connection_id=connection.pk).outcome == PollOutcome.SUCCESS


def test_provider_unreachable(mailbox, make_oauth2_credential, fresh_oauth2):
    address, _ = mailbox
    cred, client = make_oauth2_credential(address, token_url=fresh_oauth2.unreachable_url())
    with pytest.raises(OAuth2Error) as info:
        tokens.access_token(credential_id=cred.pk)
    assert info.value.transient and "cannot be reached" in str(info.value)


def test_http_token_urls_only_to_loopback():
    assert providers.url_problem("http://127.0.0.1:9/token", "token_url") is None
    assert providers.url_problem("http://localhost/token", "token_url") is None
    assert "not loopback" in providers.url_problem("http://login.example/token", "token_url")
    assert providers.url_problem("https://login.example/token", "token_url") is None
    assert "https" in providers.url_problem("ftp://x/token", "token_url")


def test_margin_is_proportional():
    assert tokens.margin(5) == 1.0
    assert tokens.margin(300) == 60.0
    assert tokens.margin(3600) == 600.0


def test_checklist_unauthorized_and_token_trouble(mailbox, make_oauth2_credential, make_oauth2_connection,
                                                  fresh_oauth2):
    address, _ = mailbox
    cred, client = make_oauth2_credential(address, kind=AUTH_CODE)
    connection = make_oauth2_connection(cred, protocol="imap")
    item = checklist.evaluation(connection=connection).item("oauth2_authorized")
    assert item.state == "fail" and item.link_label == "Authorize"
    cc, _client = make_oauth2_credential(address)
    connection = make_oauth2_connection(cc, protocol="imap")
    fresh_oauth2.token_status = 500
    assert poll(connection_id=connection.pk).outcome == PollOutcome.FAILED
    item = checklist.evaluation(connection=connection).item("oauth2_token")
    assert item.state == "fail" and "HTTP 500" in item.detail  # no token at all: expired
    # A user/password artifact named by an OAuth2 connection is refused clearly.
    from connections.models import UserCredential as UC
    from connections.services.setup import credentials as credential_service

    plain = UC(tenant=connection.tenant, name="plain-one", username=address)
    credential_service.save_artifact(credential=plain, password="pw")
    connection.credential_name = "plain-one"
    connection.save()
    assert checklist.evaluation(connection=connection).item("oauth2_kind").state == "fail"
    result = poll(connection_id=connection.pk)
    assert "OAuth2 needs" in checklist.evaluation(connection=connection).item("oauth2_kind").detail
    assert result.outcome == PollOutcome.FAILED


def test_connectivity_test_drops_a_refused_token(mailbox, make_oauth2_credential, make_oauth2_connection,
                                                  fresh_oauth2):
    address, _ = mailbox
    cred, client = make_oauth2_credential(address)
    connection = make_oauth2_connection(cred, protocol="pop3")
    assert run_connectivity_test(kind="inbound", connection_id=connection.pk).ok
    fresh_oauth2.revoke_all(client.client_id)
    failed = run_connectivity_test(kind="inbound", connection_id=connection.pk)
    assert failed.failed_step["name"] == "auth" and "status" in failed.failed_step["message"]
    again = run_connectivity_test(kind="inbound", connection_id=connection.pk)
    assert again.ok and again.steps[1]["detail"]["source"] == "provider"


def _process_worker(credential_id, barrier, results):
    from django.db import connections

    for conn in connections.all():  # the parent's connections are not ours to use or close
        conn.connection = None
    barrier.wait()
    threads = [threading.Thread(target=lambda: results.put(tokens.access_token(credential_id=credential_id).value))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    connections.close_all()


def test_single_flight_across_processes(mailbox, make_oauth2_credential, fresh_oauth2):
    """8 processes x 3 threads ask at once: one token request reaches the provider."""
    import multiprocessing

    address, _ = mailbox
    cred, client = make_oauth2_credential(address)
    fresh_oauth2.token_delay = 0.3
    before = fresh_oauth2.token_requests["client_credentials"]
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    db_connections.close_all()
    procs = [ctx.Process(target=_process_worker, args=(cred.pk, barrier, results)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 8
    values = [results.get(timeout=5) for _ in range(24)]
    assert len(set(values)) == 1
    assert fresh_oauth2.token_requests["client_credentials"] == before + 1


def test_provider_timeouts_are_retried(monkeypatch, mailbox, make_oauth2_credential, fresh_oauth2):
    address, _ = mailbox
    cred, client = make_oauth2_credential(address)
    monkeypatch.setattr(tokens, "HTTP_TIMEOUT", 0.3)
    monkeypatch.setattr(tokens, "BACKOFF", (0.05, 0.05))
    fresh_oauth2.token_delay = 1.0
    before = fresh_oauth2.token_requests["client_credentials"]
    with pytest.raises(OAuth2Error) as info:
        tokens.access_token(credential_id=cred.pk)
    assert info.value.transient and "did not answer within 0.3s" in str(info.value)
    _wait_until(lambda: fresh_oauth2.token_requests["client_credentials"] == before + tokens.ATTEMPTS)
    fresh_oauth2.token_delay = 0.0
    assert tokens.access_token(credential_id=cred.pk).source == "provider"
