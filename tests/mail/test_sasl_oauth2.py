"""XOAUTH2 / OAUTHBEARER against the real Dovecot and Postfix, with tokens of the real test
authorization server (tests/oauth2_server.py) that Dovecot introspects."""
from __future__ import annotations

import email.message

import pytest
import requests

from connections.mail import (
    AuthenticationFailed,
    IMAPClient,
    InsecureAuthRefused,
    MailError,
    MechanismUnavailable,
    POP3Client,
    SMTPClient,
)
from connections.mail.sasl import describe_failure, oauthbearer_message, xoauth2_message

pytestmark = pytest.mark.mailservers


def _token(server, client) -> str:
    reply = requests.post(server.token_url, data={"grant_type": "client_credentials", "scope": "mail"},
                          auth=(client.client_id, client.client_secret), timeout=10)
    reply.raise_for_status()
    return reply.json()["access_token"]


@pytest.fixture
def app_client(fresh_oauth2, mailbox):
    address, _password = mailbox
    return fresh_oauth2.add_client(user=address), address


def _settings(mail_servers, protocol, protection, address, **kw):
    return mail_servers.mail_settings(protocol=protocol, protection=protection, authentication="oauth2",
                                      username=address, **kw)


@pytest.mark.parametrize("protection", ["ssl_tls", "starttls_mandatory"])
@pytest.mark.parametrize("mechanism", ["", "xoauth2", "oauthbearer"])
def test_imap_login_with_a_token(mail_servers, fresh_oauth2, app_client, protection, mechanism):
    client, address = app_client
    mail_servers.append(address, [b"Subject: hi\r\n\r\nbody\r\n"])
    settings = _settings(mail_servers, "imap", protection, address, sasl_mechanism=mechanism)
    with IMAPClient(settings, _token(fresh_oauth2, client)) as imap:
        assert imap.auth_mechanism == (mechanism.upper() or "OAUTHBEARER")
        assert imap.select("INBOX").exists == 1


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_imap_without_sasl_ir_uses_the_continuation(mail_servers, fresh_oauth2, app_client, mechanism):
    client, address = app_client
    settings = _settings(mail_servers, "imap", "ssl_tls", address, sasl_mechanism=mechanism)
    # Dovecot offers SASL-IR; without it the client must send the response after "+".
    with _without(IMAPClient(settings, _token(fresh_oauth2, client)), "SASL-IR") as imap:
        assert imap.auth_mechanism == mechanism.upper()


@pytest.mark.parametrize("protection", ["ssl_tls", "starttls_mandatory"])
@pytest.mark.parametrize("mechanism", ["", "xoauth2"])
def test_pop3_login_with_a_token(mail_servers, fresh_oauth2, app_client, protection, mechanism):
    client, address = app_client
    mail_servers.append(address, [b"Subject: hi\r\n\r\nbody\r\n"])
    settings = _settings(mail_servers, "pop3", protection, address, sasl_mechanism=mechanism)
    with POP3Client(settings, _token(fresh_oauth2, client)) as pop:
        assert pop.stat()[0] == 1
        assert pop.auth_mechanism == (mechanism.upper() or "OAUTHBEARER")


@pytest.mark.parametrize("protection", ["ssl_tls", "starttls_mandatory"])
@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_smtp_send_with_a_token(mail_servers, fresh_oauth2, app_client, protection, mechanism):
    client, address = app_client
    settings = _settings(mail_servers, "smtp", protection, address, sasl_mechanism=mechanism)
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = address, address, "token"
    msg.set_content("sent with OAuth2")
    with SMTPClient(settings, _token(fresh_oauth2, client)) as smtp:
        assert smtp.auth_mechanism == mechanism.upper()
        smtp.send(sender=address, recipients=[address], message=msg.as_bytes())
    assert b"sent with OAuth2" in b"".join(mail_servers.wait_for_messages(address).values())


@pytest.mark.parametrize("protocol,client_class", [("imap", IMAPClient), ("pop3", POP3Client), ("smtp", SMTPClient)])
def test_long_tokens_work_everywhere(mail_servers, fresh_oauth2, app_client, protocol, client_class):
    """~2 KB tokens (Microsoft's size): Postfix needs line_length_limit > 2048 for the XOAUTH2 line."""
    client, address = app_client
    fresh_oauth2.token_bytes = 1500
    token = _token(fresh_oauth2, client)
    assert len(token) > 1900
    with client_class(_settings(mail_servers, protocol, "ssl_tls", address, sasl_mechanism="xoauth2"), token) as c:
        assert c.auth_mechanism == "XOAUTH2"


@pytest.mark.parametrize("protocol,client_class", [("imap", IMAPClient), ("pop3", POP3Client), ("smtp", SMTPClient)])
@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_a_refused_token_gives_the_decoded_failure(mail_servers, fresh_oauth2, app_client, protocol,
                                                   client_class, mechanism):
    client, address = app_client
    token = _token(fresh_oauth2, client)
    fresh_oauth2.revoke_all(client.client_id)
    settings = _settings(mail_servers, protocol, "ssl_tls", address, sasl_mechanism=mechanism,
                         credential_name="m365-app")
    with pytest.raises(AuthenticationFailed) as info:
        client_class(settings, token).__enter__()
    text = str(info.value)
    assert "m365-app" in text and mechanism.upper() in text
    if protocol != "smtp":  # Postfix says "(reason unavailable)" but still sends the JSON challenge
        assert "status" in text
    assert "status 401" in text or "status invalid_token" in text
    assert token not in text and "Bearer" not in text


@pytest.mark.parametrize("protocol,client_class,listener", [
    ("imap", IMAPClient, "imap_notls"), ("pop3", POP3Client, "pop3_notls"), ("smtp", SMTPClient, "smtp_notls"),
])
def test_no_token_without_tls(mail_servers, fresh_oauth2, app_client, protocol, client_class, listener):
    client, address = app_client
    with pytest.raises(InsecureAuthRefused) as info:
        client_class(_settings(mail_servers, protocol, "off", address, listener=listener), "not-sent").__enter__()
    assert "token was not sent" in str(info.value)


def _without(imap, capability):
    original = imap._read_capabilities

    def read(*, refresh=False):
        original(refresh=refresh)
        imap.capabilities.discard(capability)

    imap._read_capabilities = read
    return imap


def test_forced_mechanism_not_offered_names_the_offer(mail_servers, app_client):
    client, address = app_client
    imap = _without(IMAPClient(_settings(mail_servers, "imap", "ssl_tls", address, sasl_mechanism="xoauth2"), "x"),
                    "AUTH=XOAUTH2")
    with pytest.raises(MechanismUnavailable) as info:
        imap.__enter__()
    assert "does not offer XOAUTH2" in str(info.value) and "OAUTHBEARER" in str(info.value)


def test_falls_back_to_xoauth2_when_oauthbearer_is_not_offered(mail_servers, fresh_oauth2, app_client):
    client, address = app_client
    imap = _without(IMAPClient(_settings(mail_servers, "imap", "ssl_tls", address), _token(fresh_oauth2, client)),
                    "AUTH=OAUTHBEARER")
    with imap:
        assert imap.auth_mechanism == "XOAUTH2"


def test_provider_unreachable_for_dovecot_is_temporary(mail_servers, fresh_oauth2, app_client):
    """Dovecot cannot introspect the token (the provider's /introspect answers 503)."""
    client, address = app_client
    token = _token(fresh_oauth2, client)
    fresh_oauth2.introspection_status = 503
    try:
        with pytest.raises(MailError) as info:
            IMAPClient(_settings(mail_servers, "imap", "ssl_tls", address), token).__enter__()
    finally:
        fresh_oauth2.introspection_status = None
    assert info.value.transient and "temporary" in str(info.value)


def test_messages_and_failure_decoding():
    assert xoauth2_message("u@x", "T") == b"user=u@x\x01auth=Bearer T\x01\x01"
    assert oauthbearer_message("a,b=c@x", "T", host="h", port=993) == (
        b"n,a=a=2Cb=3Dc@x,\x01host=h\x01port=993\x01auth=Bearer T\x01\x01")
    assert describe_failure("eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=") == (
        "status 401, schemes bearer, scope mail")
    assert describe_failure("not base64 json") == ""
