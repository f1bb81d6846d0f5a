"""IMAPClient against the real Dovecot of the fixture, and a scripted server for faults."""
from __future__ import annotations

import base64
import os
import re
import time

import pytest

from connections.mail import IMAPClient, MailSettings
from connections.mail.errors import (
    AuthenticationFailed,
    ConnectError,
    InsecureAuthRefused,
    MechanismUnavailable,
    ProtocolError,
    TLSError,
)
from tests.mailcorpus import corpus_files

pytestmark = pytest.mark.mailservers


def corpus_mails() -> list[bytes]:
    """The corpus of tests/mailcorpus: generated mails, plus the public corpus when present."""
    return [p.read_bytes() for p in corpus_files()]


def mail(i: int, size: int = 0) -> bytes:
    body = (f"line {i}\r\n" + "x" * 70 + "\r\n") * max(1, size // 80)
    return f"From: a@example.test\r\nSubject: mail {i}\r\nMessage-ID: <{i}@t>\r\n\r\n{body}".encode()


def imap_settings(mail_servers, address, protection="ssl_tls", authentication="plain", **kw) -> MailSettings:
    return mail_servers.mail_settings(protocol="imap", protection=protection, authentication=authentication, username=address, **kw)


@pytest.mark.parametrize(
    "protection, authentication, mechanism, expected",
    [
        ("ssl_tls", "plain", None, "PLAIN"),
        ("ssl_tls", "plain", "LOGIN", "LOGIN"),
        ("starttls_mandatory", "plain", None, "PLAIN"),
        ("starttls_mandatory", "encrypted", None, "CRAM-MD5"),
        ("ssl_tls", "encrypted", None, "CRAM-MD5"),
        ("off", "encrypted", None, "CRAM-MD5"),
        ("starttls_optional", "plain", None, "PLAIN"),
    ],
)
def test_login_methods_with_utf8_credentials(mail_servers, protection, authentication, mechanism, expected):
    address, password = mail_servers.add_user(local="jürgen.ü" + os.urandom(3).hex(), password="Pässwörd ✓ \"quoted\" \\ €")
    settings = imap_settings(mail_servers, address, protection, authentication)
    with IMAPClient(settings, password, mechanism=mechanism) as imap:
        assert imap.auth_mechanism == expected
        assert imap.encrypted is (protection != "off")
        assert "IMAP4REV1" in imap.capabilities
        if protection.startswith("starttls"):
            assert "STARTTLS" in imap.capabilities_before_tls and imap.tls_info.verified
        assert imap.select("INBOX").exists == 0


def test_wrong_password(mail_servers):
    address, _ = mail_servers.add_user()
    settings = imap_settings(mail_servers, address, credential_name="inbox-cred", credential_version=2)
    with pytest.raises(AuthenticationFailed) as info:
        IMAPClient(settings, "not-the-password").__enter__()
    assert "credential 'inbox-cred' (deployed version 2)" in info.value.message
    assert "not-the-password" not in str(info.value)


def test_plain_refused_without_tls_and_starttls_rules(mail_servers):
    address, password = mail_servers.add_user()
    with pytest.raises(InsecureAuthRefused) as info:
        IMAPClient(imap_settings(mail_servers, address, "off"), password).__enter__()
    assert "STARTTLS" not in info.value.hint or "offers STARTTLS" not in info.value.hint  # notls offers none
    # STARTTLS optional against a server without STARTTLS: unencrypted, so refused as well.
    optional = imap_settings(mail_servers, address, "starttls_optional", listener="imap_notls")
    with pytest.raises(InsecureAuthRefused):
        IMAPClient(optional, password).__enter__()
    mandatory = imap_settings(mail_servers, address, "starttls_mandatory", listener="imap_notls")
    with pytest.raises(TLSError) as tls_info:
        IMAPClient(mandatory, password).__enter__()
    assert "does not offer STARTTLS" in tls_info.value.message
    # Off against the STARTTLS listener: the hint says to use it.
    off_on_starttls = imap_settings(mail_servers, address, "off", listener="imap")
    with pytest.raises(InsecureAuthRefused) as info:
        IMAPClient(off_on_starttls, password).__enter__()
    assert "STARTTLS mandatory" in info.value.hint
    allowed = imap_settings(mail_servers, address, "off", allow_plain_without_tls=True)
    with IMAPClient(allowed, password) as imap:
        assert not imap.encrypted


# --- scripted IMAP server ----------------------------------------------------------------

def imap_script(capabilities: str, *, fetch_then_drop: bool = False, logins: list | None = None,
                login_reply: str = "OK logged in", greeting_lists_capabilities: bool = True):
    def handler(conn):
        conn.send(f"* OK [CAPABILITY {capabilities}] fake ready\r\n" if greeting_lists_capabilities
                  else "* OK fake ready\r\n")
        while True:
            line = conn.readline()
            if not line:
                return
            tag, _, rest = line.decode("utf-8", "replace").partition(" ")
            command = rest.split(" ", 1)[0].upper().strip()
            if command == "CAPABILITY":
                conn.send(f"* CAPABILITY {capabilities}\r\n{tag} OK done\r\n")
            elif command == "LOGIN":
                raw = line
                while (m := re.search(rb"\{(\d+)\}\r\n$", raw)):
                    conn.send("+ go on\r\n")
                    literal = conn.read(int(m.group(1)))
                    raw = raw + literal
                    raw = raw + conn.readline()
                if logins is not None:
                    logins.append(raw)
                conn.send(f"{tag} {login_reply}\r\n")
            elif command == "LIST":
                conn.send(
                    '* LIST (\\HasNoChildren) "/" {10}\r\nFolder "x"\r\n'
                    '* LIST (\\Noselect \\HasChildren) NIL "Top"\r\n'
                    '* LIST () "/" "Entw&APw-rfe"\r\n'
                    '* LIST (\\HasNoChildren) "/" INBOX\r\n'
                    '* LIST () "/" "Back\\\\slash \\"q\\""\r\n'
                    f"{tag} OK done\r\n"
                )
            elif command in ("SELECT", "EXAMINE"):
                conn.send(f"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n{tag} OK [READ-WRITE] done\r\n")
            elif command == "UID" and fetch_then_drop:
                conn.send("* 1 FETCH (UID 1 BODY[] {1000}\r\n" + "x" * 100)
                return
            elif command == "LOGOUT":
                conn.send(f"* BYE bye\r\n{tag} OK done\r\n")
                return
            else:
                conn.send(f"{tag} BAD unknown\r\n")

    return handler


def fake(server, **kw) -> MailSettings:
    values = dict(protocol="imap", host=server.host, port=server.port, protection="off", username="u@x.test", timeout=5)
    values.update(kw)
    return MailSettings(**values)


def test_utf8_login_with_a_synchronising_literal(scripted):
    logins: list[bytes] = []
    server = scripted(imap_script("IMAP4rev1", logins=logins))
    settings = fake(server, username="jürgen@x.test", allow_plain_without_tls=True)
    with IMAPClient(settings, 'pä"ss wört') as imap:
        assert imap.auth_mechanism == "LOGIN"
    assert len(logins) == 1
    line = logins[0]
    user = "jürgen@x.test".encode()
    password = 'pä"ss wört'.encode()
    assert b"{%d}\r\n" % len(password) + password in line
    assert user in line


@pytest.mark.parametrize("in_greeting", [True, False])
def test_capabilities_listed_in_the_greeting_save_the_capability_command(scripted, in_greeting):
    server = scripted(imap_script("IMAP4rev1 AUTH=PLAIN", greeting_lists_capabilities=in_greeting))
    with IMAPClient(fake(server, allow_plain_without_tls=True), "pw") as imap:
        assert "AUTH=PLAIN" in imap.capabilities
    before_login, login, _ = server.data.upper().partition(b" LOGIN ")
    assert login, server.data
    assert (b" CAPABILITY\r\n" in before_login) is not in_greeting


def test_plain_login_refused_before_the_password_is_sent(scripted):
    server = scripted(imap_script("IMAP4rev1 AUTH=PLAIN SASL-IR"))
    password = "Geheim-123"
    with pytest.raises(InsecureAuthRefused):
        IMAPClient(fake(server, authentication="plain"), password).__enter__()
    time.sleep(0.1)
    data = server.data
    assert b"CAPABILITY" in data or data == b""
    for needle in (b"LOGIN", b"AUTHENTICATE", password.encode(), base64.b64encode(b"\0u@x.test\0" + password.encode())):
        assert needle not in data


def test_cram_md5_missing_names_what_is_offered(scripted):
    server = scripted(imap_script("IMAP4rev1 AUTH=PLAIN AUTH=LOGIN"))
    with pytest.raises(MechanismUnavailable) as info:
        IMAPClient(fake(server, authentication="encrypted"), "pw").__enter__()
    assert info.value.offered == ["LOGIN", "PLAIN"]
    assert "LOGIN, PLAIN" in info.value.message and "CRAM-MD5" in info.value.message


def test_temporary_login_failure_is_transient(scripted):
    server = scripted(imap_script("IMAP4rev1", login_reply="NO [UNAVAILABLE] Temporary authentication failure"))
    from connections.mail.errors import MailError

    with pytest.raises(MailError) as info:
        IMAPClient(fake(server, authentication="plain", allow_plain_without_tls=True), "pw").__enter__()
    assert info.value.transient and not isinstance(info.value, AuthenticationFailed)


def test_bye_greeting_is_transient_and_non_imap_greeting_explains(scripted):
    bye = scripted(lambda conn: conn.send("* BYE Too many connections\r\n"))
    with pytest.raises(ConnectError) as info:
        IMAPClient(fake(bye), "pw").__enter__()
    assert info.value.transient and "Too many connections" in info.value.message
    smtp_like = scripted(lambda conn: (conn.send("220 mail ESMTP\r\n"), conn.readline()))
    with pytest.raises(ProtocolError) as info:
        IMAPClient(fake(smtp_like), "pw").__enter__()
    assert info.value.step == "greeting" and "IMAP port" in info.value.hint


def test_silent_server_times_out(scripted):
    server = scripted(lambda conn: time.sleep(5))
    started = time.monotonic()
    with pytest.raises(ConnectError) as info:
        IMAPClient(fake(server, timeout=1), "pw").__enter__()
    assert time.monotonic() - started < 3
    assert info.value.step == "greeting" and "within 1 s" in info.value.message
