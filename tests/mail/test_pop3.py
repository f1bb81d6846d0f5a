"""POP3Client against the real Dovecot of the fixture, and a scripted server for faults."""
from __future__ import annotations

import os
import time

import pytest

from connections.mail import MailSettings, POP3Client
from connections.mail.errors import (
    AuthenticationFailed,
    ConnectError,
    InsecureAuthRefused,
    MechanismUnavailable,
)

from .test_imap import mail

pytestmark = pytest.mark.mailservers


def pop_settings(mail_servers, address, protection="ssl_tls", authentication="plain", **kw) -> MailSettings:
    return mail_servers.mail_settings(protocol="pop3", protection=protection, authentication=authentication, username=address, **kw)


@pytest.mark.parametrize(
    "protection, authentication, mechanism, expected",
    [
        ("ssl_tls", "plain", None, "USER"),
        ("ssl_tls", "plain", "PLAIN", "PLAIN"),
        ("starttls_mandatory", "plain", None, "USER"),
        ("starttls_mandatory", "encrypted", None, "CRAM-MD5"),
        ("ssl_tls", "encrypted", "APOP", "APOP"),
        ("off", "encrypted", None, "CRAM-MD5"),
        ("off", "encrypted", "APOP", "APOP"),
        ("starttls_optional", "plain", None, "USER"),
    ],
)
def test_login_methods_with_utf8_credentials(mail_servers, protection, authentication, mechanism, expected):
    address, password = mail_servers.add_user(local="pöp" + os.urandom(3).hex(), password="Pässwörd ✓ €")
    mail_servers.append(address, [mail(1)])
    with POP3Client(pop_settings(mail_servers, address, protection, authentication), password, mechanism=mechanism) as pop:
        assert pop.auth_mechanism == expected
        assert pop.encrypted is (protection != "off")
        assert pop.stat() == (1, len(mail_servers.server_copies(address)[1]))


def test_wrong_password_and_plain_refusal(mail_servers):
    address, password = mail_servers.add_user()
    with pytest.raises(AuthenticationFailed) as info:
        POP3Client(pop_settings(mail_servers, address, credential_name="pop-cred", credential_version=1), "bad-pw").__enter__()
    assert "credential 'pop-cred' (deployed version 1)" in info.value.message and "bad-pw" not in str(info.value)
    with pytest.raises(InsecureAuthRefused) as refused:
        POP3Client(pop_settings(mail_servers, address, "off", listener="pop3"), password).__enter__()
    assert "STARTTLS mandatory" in refused.value.hint  # the listener offers STLS
    with pytest.raises(InsecureAuthRefused):
        POP3Client(pop_settings(mail_servers, address, "starttls_optional", listener="pop3_notls"), password).__enter__()


# --- scripted POP3 server ----------------------------------------------------------------

def pop_script(*, greeting="+OK fake ready", capa=("USER", "UIDL", "TOP"), retr_then_drop=False,
               uidl=True, passwords=None, pass_reply="+OK logged in"):
    import hashlib as _h

    def handler(conn):
        conn.send(greeting + "\r\n")
        while True:
            line = conn.readline()
            if not line:
                return
            words = line.decode("utf-8", "replace").strip().split(" ")
            verb = words[0].upper()
            if verb == "CAPA":
                if capa is None:
                    conn.send("-ERR unknown command\r\n")
                else:
                    conn.send("+OK\r\n" + "".join(f"{c}\r\n" for c in capa) + ".\r\n")
            elif verb == "USER":
                conn.send("+OK\r\n")
            elif verb == "PASS":
                conn.send(pass_reply + "\r\n")
            elif verb == "APOP":
                stamp = greeting[greeting.index("<"):greeting.index(">") + 1]
                good = _h.md5((stamp + passwords[words[1]]).encode()).hexdigest()
                conn.send("+OK in\r\n" if words[2] == good else "-ERR [AUTH] wrong\r\n")
            elif verb == "STAT":
                conn.send("+OK 1 100\r\n")
            elif verb == "UIDL":
                conn.send("+OK\r\n1 abc\r\n.\r\n" if uidl else "-ERR no UIDL here\r\n")
            elif verb == "RETR":
                if retr_then_drop:
                    conn.send("+OK 100 octets\r\nSubject: x\r\n\r\nhalf a mail")
                    return
                conn.send("+OK\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
            elif verb == "QUIT":
                conn.send("+OK bye\r\n")
                return
            else:
                conn.send("-ERR unknown\r\n")

    return handler


def fake(server, **kw) -> MailSettings:
    values = dict(protocol="pop3", host=server.host, port=server.port, protection="off", username="u@x.test", timeout=5)
    values.update(kw)
    return MailSettings(**values)


def test_plain_refused_before_user_or_password_is_sent(scripted):
    server = scripted(pop_script())
    with pytest.raises(InsecureAuthRefused):
        POP3Client(fake(server, authentication="plain"), "Geheim-42").__enter__()
    time.sleep(0.1)
    assert b"CAPA" in server.data
    assert b"USER" not in server.data and b"PASS" not in server.data and b"Geheim-42" not in server.data


def test_encrypted_without_cram_md5_or_apop_names_what_is_offered(scripted):
    server = scripted(pop_script(capa=("USER", "SASL PLAIN LOGIN", "UIDL")))
    with pytest.raises(MechanismUnavailable) as info:
        POP3Client(fake(server, authentication="encrypted"), "pw").__enter__()
    assert info.value.offered == ["PLAIN", "LOGIN", "USER"]
    assert "PLAIN, LOGIN, USER" in info.value.message
    assert b"AUTH" not in server.data and b"USER" not in server.data.split(b"CAPA")[-1][:0] + b""


def test_apop_is_used_when_cram_md5_is_not_offered(scripted):
    server = scripted(pop_script(greeting="+OK fake <1896.697170952@dbc.mtview.ca.us>", capa=None,
                                 passwords={"jürgen": "tänstaaf"}))
    with POP3Client(fake(server, authentication="encrypted", username="jürgen"), "tänstaaf") as pop:
        assert pop.auth_mechanism == "APOP" and not pop.capa_supported
        assert pop.retr(1) == b"Subject: x\r\n\r\nbody\r\n"
    assert "tänstaaf".encode() not in server.data


@pytest.mark.parametrize("reply, transient", [
    ("-ERR [IN-USE] Mailbox is locked by another POP3 session", True),
    ("-ERR [SYS/TEMP] Temporary failure", True),
    ("-ERR [AUTH] Authentication failed", False),
])
def test_login_failures_are_classified(scripted, reply, transient):
    from connections.mail.errors import MailError

    server = scripted(pop_script(pass_reply=reply))
    with pytest.raises(MailError) as info:
        POP3Client(fake(server, authentication="plain", allow_plain_without_tls=True), "pw").__enter__()
    assert info.value.transient is transient
    assert isinstance(info.value, AuthenticationFailed) is (not transient)
    assert reply[5:] in info.value.message


def test_silent_server_times_out(scripted):
    server = scripted(lambda conn: time.sleep(5))
    started = time.monotonic()
    with pytest.raises(ConnectError) as info:
        POP3Client(fake(server, timeout=1), "pw").__enter__()
    assert time.monotonic() - started < 3 and "within 1 s" in info.value.message
