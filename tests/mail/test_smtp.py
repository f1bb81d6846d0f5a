"""SMTPClient against the real Postfix of the fixture, and a scripted server for faults."""
from __future__ import annotations

import base64
import time
import uuid

import pytest

from connections.mail import MailSettings, SMTPClient
from connections.mail.errors import (
    AuthenticationFailed,
    ConnectError,
    InsecureAuthRefused,
    MechanismUnavailable,
    SMTPReplyError,
)

pytestmark = pytest.mark.mailservers


def _message(sender: str, to: str, subject: str, body: bytes) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{uuid.uuid4().hex}@example.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + body


def _body(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize(
    "protection, authentication",
    [("starttls_mandatory", "plain"), ("starttls_mandatory", "encrypted"), ("ssl_tls", "plain"), ("ssl_tls", "encrypted")],
)
def test_send_and_read_back_with_utf8_credentials(mail_servers, protection, authentication):
    address, password = mail_servers.add_user(password=f"Pä§wörd €{uuid.uuid4().hex[:6]} ✓")
    settings = mail_servers.mail_settings(
        protocol="smtp", protection=protection, authentication=authentication, username=address
    )
    body = "Grüße\r\n.a line starting with a dot\r\n..two dots\r\n.\r\nend\r\n".encode()
    raw = _message(address, address, "Test", body)
    with SMTPClient(settings, password) as smtp:
        assert smtp.encrypted and smtp.tls_info is not None and smtp.tls_info.verified
        assert smtp.auth_mechanism == ("CRAM-MD5" if authentication == "encrypted" else "PLAIN")
        assert "pipelining" in smtp.extensions and smtp.max_size and smtp.max_size > 1_000_000
        result = smtp.send(sender=address, recipients=[address], message=raw)
    assert result.accepted == [address] and result.refused == {}
    assert result.reply[0] == 250
    delivered = mail_servers.wait_for_messages(address, count=1)
    assert _body(next(iter(delivered.values()))) == body


def test_login_mechanism_and_many_messages_over_one_session(mail_servers):
    address, password = mail_servers.add_user(password="ünïcode-pässword")
    settings = mail_servers.mail_settings(protocol="smtp", protection="ssl_tls", authentication="plain", username=address)
    bodies = [f"message {i}\r\n".encode() for i in range(30)]
    with SMTPClient(settings, password, mechanism="LOGIN", pipelining=False) as smtp:
        assert smtp.auth_mechanism == "LOGIN"
        for body in bodies[:15]:
            smtp.send(sender=address, recipients=[address], message=_message(address, address, "n", body))
        smtp._use_pipelining = True  # the same session, now pipelined
        for body in bodies[15:]:
            smtp.send(sender=address, recipients=[address], message=_message(address, address, "p", body))
    delivered = mail_servers.wait_for_messages(address, count=30)
    assert sorted(_body(m) for m in delivered.values()) == sorted(bodies)


def test_wrong_password_names_user_and_credential_but_not_the_secret(mail_servers):
    address, _password = mail_servers.add_user()
    settings = mail_servers.mail_settings(
        protocol="smtp", protection="ssl_tls", authentication="plain", username=address,
        credential_name="outbound-main", credential_version=3,
    )
    secret = "wrong-Secret-123"
    with pytest.raises(AuthenticationFailed) as info:
        SMTPClient(settings, secret).__enter__()
    text = str(info.value)
    assert f"user {address} with credential 'outbound-main' (deployed version 3)" in text
    assert secret not in text and base64.b64encode(secret.encode()).decode() not in text
    assert not info.value.transient


def test_auth_only_after_starttls_gets_a_hint(mail_servers):
    address, password = mail_servers.add_user()
    settings = mail_servers.mail_settings(
        protocol="smtp", protection="off", authentication="plain", username=address,
        listener="submission", allow_plain_without_tls=True,
    )
    with pytest.raises(MechanismUnavailable) as info:
        SMTPClient(settings, password).__enter__()
    assert "only after STARTTLS" in info.value.message
    assert "STARTTLS mandatory" in info.value.hint


def test_plain_refused_on_the_cleartext_listener_but_cram_md5_works(mail_servers):
    address, password = mail_servers.add_user()
    settings = mail_servers.mail_settings(protocol="smtp", protection="off", authentication="plain", username=address)
    with pytest.raises(InsecureAuthRefused):
        SMTPClient(settings, password).__enter__()
    encrypted = mail_servers.mail_settings(protocol="smtp", protection="off", authentication="encrypted", username=address)
    with SMTPClient(encrypted, password) as smtp:
        assert not smtp.encrypted and smtp.auth_mechanism == "CRAM-MD5"
    allowed = mail_servers.mail_settings(
        protocol="smtp", protection="off", authentication="plain", username=address, allow_plain_without_tls=True
    )
    with SMTPClient(allowed, password) as smtp:
        assert smtp.auth_mechanism == "PLAIN"


def test_no_authentication_delivers_locally_and_starttls_optional_upgrades(mail_servers):
    address, password = mail_servers.add_user()
    plain = mail_servers.mail_settings(protocol="smtp", protection="off", authentication="none", username="")
    with SMTPClient(plain, None) as smtp:
        assert not smtp.encrypted and smtp.auth_mechanism == ""
        smtp.send(sender="someone@elsewhere.test", recipients=[address], message=_message("a@b.test", address, "x", b"no auth\r\n"))
        with pytest.raises(SMTPReplyError) as info:
            smtp.send(sender=address, recipients=["x@elsewhere.test"], message=_message(address, "x@elsewhere.test", "x", b"relay\r\n"))
        assert info.value.code // 100 == 5
    optional = mail_servers.mail_settings(protocol="smtp", protection="starttls_optional", authentication="plain", username=address)
    with SMTPClient(optional, password) as smtp:
        assert smtp.encrypted and smtp.tls_info.verified and "starttls" in smtp.extensions_before_tls
    assert _body(next(iter(mail_servers.wait_for_messages(address).values()))) == b"no auth\r\n"


def test_starttls_mandatory_fails_when_not_offered(mail_servers):
    address, password = mail_servers.add_user()
    settings = mail_servers.mail_settings(
        protocol="smtp", protection="starttls_mandatory", authentication="plain", username=address, listener="smtp_notls"
    )
    from connections.mail.errors import TLSError

    with pytest.raises(TLSError) as info:
        SMTPClient(settings, password).__enter__()
    assert "does not offer STARTTLS" in info.value.message


# --- scripted server: faults a real server will not produce on demand ----------------------

def smtp_script(
    *,
    extensions=("PIPELINING", "SIZE 10000000", "8BITMIME"),
    mail_reply="250 2.1.0 Ok",
    rcpt_reply=lambda address: "250 2.1.5 Ok",
    data_reply="354 go ahead",
    final_reply="250 2.0.0 Ok: queued",
    drop_after_payload=False,
    auth_reply="235 2.7.0 Authentication successful",
    drop_on_rcpt=None,
):
    def handler(conn):
        conn.send("220 fake.test ESMTP\r\n")
        while True:
            line = conn.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                lines = ["fake.test", *extensions]
                conn.send("".join(f"250{'-' if i < len(lines) - 1 else ' '}{x}\r\n" for i, x in enumerate(lines)))
            elif verb == b"MAIL":
                conn.send(mail_reply + "\r\n")
            elif verb == b"RCPT":
                address = line.split(b":", 1)[1].strip().strip(b"<>").decode()
                if drop_on_rcpt and address == drop_on_rcpt:
                    conn.send("421 4.3.2 Service shutting down\r\n")
                    return
                conn.send(rcpt_reply(address) + "\r\n")
            elif verb == b"DATA":
                conn.send(data_reply + "\r\n")
                if data_reply.startswith("354"):
                    while conn.readline() not in (b".\r\n", b""):
                        pass
                    if drop_after_payload:
                        return
                    conn.send(final_reply + "\r\n")
            elif verb == b"AUTH":
                conn.send(auth_reply + "\r\n")
            elif verb in (b"RSET", b"NOOP"):
                conn.send("250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                conn.send("221 2.0.0 Bye\r\n")
                return
            else:
                conn.send("502 5.5.2 Error: command not recognized\r\n")

    return handler


def _fake_settings(server, **kw) -> MailSettings:
    values = dict(protocol="smtp", host=server.host, port=server.port, protection="off", authentication="none", timeout=5)
    values.update(kw)
    return MailSettings(**values)


RAW = b"Subject: x\r\n\r\nbody\r\n"


def test_server_refusing_the_session_at_greeting(scripted):
    def refuse(conn):
        conn.send("554 5.7.1 No SMTP service here\r\n")
        conn.readline()

    server = scripted(refuse)
    from connections.mail.errors import ProtocolError

    with pytest.raises(ProtocolError) as info:
        SMTPClient(_fake_settings(server), None).__enter__()
    assert info.value.step == "greeting" and info.value.code == 554 and "No SMTP service" in info.value.message


def test_a_non_smtp_greeting_explains(scripted):
    server = scripted(lambda conn: (conn.send("* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n"), conn.readline()))
    from connections.mail.errors import ProtocolError

    with pytest.raises(ProtocolError) as info:
        SMTPClient(_fake_settings(server), None).__enter__()
    assert "greeted as an IMAP server, not as an SMTP server: * OK [CAPABILITY IMAP4rev1] Dovecot ready." in info.value.message
    assert "SMTP port" in info.value.hint


def test_slow_server_hits_the_timeout(scripted):
    def silent(conn):
        time.sleep(5)

    server = scripted(silent)
    started = time.monotonic()
    with pytest.raises(ConnectError) as info:
        SMTPClient(_fake_settings(server, timeout=1), None).__enter__()
    assert time.monotonic() - started < 3
    assert info.value.transient and info.value.step == "greeting"
    assert "within 1 s" in info.value.message


AUTH_EXTENSIONS = ("PIPELINING", "AUTH PLAIN LOGIN")


@pytest.mark.parametrize("protection", ["off", "starttls_optional"])
def test_plain_auth_refused_before_anything_is_sent(scripted, protection):
    server = scripted(smtp_script(extensions=AUTH_EXTENSIONS))
    password = "Sécret-pw-42"
    settings = _fake_settings(server, protection=protection, authentication="plain", username="user@x.test")
    with pytest.raises(InsecureAuthRefused) as info:
        SMTPClient(settings, password).__enter__()
    assert "password was not sent" in info.value.message
    time.sleep(0.1)
    received = server.data
    assert b"EHLO" in received.upper()
    assert b"AUTH" not in received.upper()
    for encoded in (password.encode(), base64.b64encode(password.encode()),
                    base64.b64encode(b"\0user@x.test\0" + password.encode())):
        assert encoded not in received


def test_plain_auth_without_tls_when_explicitly_allowed_uses_utf8(scripted):
    server = scripted(smtp_script(extensions=AUTH_EXTENSIONS))
    settings = _fake_settings(server, authentication="plain", username="jürgen@x.test", allow_plain_without_tls=True)
    with SMTPClient(settings, "pässwort"):
        pass
    line = next(ln for ln in server.data.split(b"\r\n") if ln.startswith(b"AUTH PLAIN "))
    assert base64.b64decode(line.split()[2]) == "\0jürgen@x.test\0pässwort".encode()


def test_cram_md5_not_offered_names_the_offered_mechanisms(scripted):
    server = scripted(smtp_script(extensions=AUTH_EXTENSIONS))
    settings = _fake_settings(server, authentication="encrypted", username="u@x.test")
    with pytest.raises(MechanismUnavailable) as info:
        SMTPClient(settings, "pw").__enter__()
    assert info.value.offered == ["PLAIN", "LOGIN"]
    assert "PLAIN, LOGIN" in info.value.message and "CRAM-MD5" in info.value.message
    assert b"AUTH" not in server.data
