"""Timeouts are recognised by exception type, and their hint depends on whether the server had
answered already: no greeting → host/port/firewall; mid-session → the server is too slow now."""
from __future__ import annotations

import time

import pytest

from connections.mail.errors import ConnectError
from connections.mail.imap import IMAPClient
from connections.mail.pop3 import POP3Client
from connections.mail.settings import MailSettings
from connections.mail.smtp import SMTPClient

TOO_SLOW = (
    "the server answered before but is too slow now (overloaded?); it is tried again later — "
    "raise the connection's timeout if this recurs"
)
NO_ANSWER = "check host, port and firewall"
RAW = b"Subject: x\r\n\r\nbody\r\n"


def _settings(server, protocol: str, **kw) -> MailSettings:
    values = dict(protocol=protocol, host=server.host, port=server.port, protection="off", timeout=1)
    values.update(kw)
    return MailSettings(**values)


def smtp_stalling(*, on: bytes, read_data: bool = True):
    """An SMTP server that answers everything until the command `on`, then neither answers nor
    (with read_data False, after DATA's 354) reads any more."""
    def handler(conn):
        conn.send("220 fake ESMTP\r\n")
        while True:
            line = conn.readline()
            if not line:
                return
            verb = line.split()[0].upper() if line.split() else b""
            if verb == on:
                time.sleep(4)
                return
            if verb == b"EHLO":
                conn.send("250-fake\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                conn.send("354 go\r\n")
                if not read_data:
                    time.sleep(4)
                    return
                conn.read_until(b"\r\n.\r\n")
                conn.send("250 ok\r\n")
            elif verb == b"QUIT":
                conn.send("221 bye\r\n")
                return
            else:
                conn.send("250 ok\r\n")

    return handler


def test_smtp_silent_greeting_still_points_at_host_port_firewall(scripted):
    server = scripted(lambda conn: time.sleep(4))
    with pytest.raises(ConnectError) as info:
        SMTPClient(_settings(server, "smtp", authentication="none"), None).__enter__()
    assert info.value.step == "greeting"
    assert f"no answer from 127.0.0.1:{server.port} within 1 s while reading the greeting" in info.value.message
    assert info.value.hint.startswith(NO_ANSWER)


def test_smtp_mid_session_timeout_says_the_server_is_too_slow(scripted):
    server = scripted(smtp_stalling(on=b"MAIL"))
    with SMTPClient(_settings(server, "smtp", authentication="none"), None, pipelining=False) as smtp:
        with pytest.raises(ConnectError) as info:
            smtp.send(sender="s@x.test", recipients=["a@x.test"], message=RAW)
    assert f"no answer from 127.0.0.1:{server.port} within 1 s while sending" in info.value.message
    assert info.value.hint == TOO_SLOW and info.value.transient
    assert NO_ANSWER not in info.value.hint


def test_smtp_write_timeout_is_recognised_by_type_not_by_text(scripted):
    # smtplib turns a timed-out sendall() into SMTPServerDisconnected("Server not connected"):
    # no "timed out" in the text, only the TimeoutError it was raised from says what happened.
    server = scripted(smtp_stalling(on=b"NEVER", read_data=False))
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 16 * 1024  # 16 MB: more than the socket buffers hold
    with SMTPClient(_settings(server, "smtp", authentication="none"), None, pipelining=False) as smtp:
        with pytest.raises(ConnectError) as info:
            smtp.send(sender="s@x.test", recipients=["a@x.test"], message=big)
    assert f"no answer from 127.0.0.1:{server.port} within 1 s while sending" in info.value.message
    assert info.value.hint == TOO_SLOW
    assert "closed the connection" not in info.value.message


def imap_stalling(*, on: str):
    def handler(conn):
        conn.send("* PREAUTH [CAPABILITY IMAP4rev1] fake\r\n")
        while True:
            line = conn.readline()
            if not line:
                return
            tag, command = line.decode().split()[:2]
            command = command.upper()
            if command == on:
                time.sleep(4)
                return
            if command == "CAPABILITY":
                conn.send(f"* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n")
            elif command == "LOGOUT":
                conn.send(f"* BYE bye\r\n{tag} OK done\r\n")
                return
            else:
                conn.send(f"{tag} OK done\r\n")

    return handler


def test_imap_mid_session_timeout_says_the_server_is_too_slow(scripted):
    server = scripted(imap_stalling(on="SELECT"))
    with IMAPClient(_settings(server, "imap", authentication="none"), None) as imap:
        with pytest.raises(ConnectError) as info:
            imap.select("INBOX")
    assert f"no answer from 127.0.0.1:{server.port} within 1 s" in info.value.message
    assert info.value.hint == TOO_SLOW


def test_imap_write_timeout_is_not_a_broken_session(scripted):
    # imaplib wraps a timed-out send in IMAP4.abort("socket error: timed out").
    def handler(conn):
        conn.send("* PREAUTH [CAPABILITY IMAP4rev1] fake\r\n")
        while True:
            line = conn.readline()
            if not line:
                return
            tag, command = line.decode("latin-1").split()[:2]
            if command.upper() == "APPEND":
                conn.send("+ go ahead\r\n")
                time.sleep(4)  # and read nothing more
                return
            if command.upper() == "CAPABILITY":
                conn.send(f"* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n")
            else:
                conn.send(f"{tag} OK done\r\n")

    server = scripted(handler)
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 16 * 1024
    with IMAPClient(_settings(server, "imap", authentication="none"), None) as imap:
        with pytest.raises(ConnectError) as info:
            imap.append("INBOX", big)
    assert f"no answer from 127.0.0.1:{server.port} within 1 s" in info.value.message
    assert info.value.hint == TOO_SLOW
    assert "broke" not in info.value.message


def test_imap_silent_greeting_still_points_at_host_port_firewall(scripted):
    server = scripted(lambda conn: time.sleep(4))
    with pytest.raises(ConnectError) as info:
        IMAPClient(_settings(server, "imap", authentication="none"), None).__enter__()
    assert info.value.step == "greeting" and info.value.hint.startswith(NO_ANSWER)


def pop_stalling(*, on: str):
    def handler(conn):
        conn.send("+OK fake\r\n")
        while True:
            line = conn.readline()
            if not line:
                return
            verb = line.decode().split()[0].upper()
            if verb == on:
                time.sleep(4)
                return
            if verb == "CAPA":
                conn.send("+OK\r\nUSER\r\nUIDL\r\n.\r\n")
            elif verb == "STAT":
                conn.send("+OK 0 0\r\n")
            elif verb == "QUIT":
                conn.send("+OK bye\r\n")
                return
            else:
                conn.send("+OK\r\n")

    return handler


def test_pop3_mid_session_timeout_says_the_server_is_too_slow(scripted):
    server = scripted(pop_stalling(on="STAT"))
    settings = _settings(server, "pop3", authentication="plain", username="u@x.test", allow_plain_without_tls=True)
    with pytest.raises(ConnectError) as info:
        with POP3Client(settings, "pw") as pop:
            pop.stat()
    assert f"no answer from 127.0.0.1:{server.port} within 1 s while STAT" in info.value.message
    assert info.value.hint == TOO_SLOW


def test_pop3_timeout_during_login_says_the_server_is_too_slow(scripted):
    server = scripted(pop_stalling(on="PASS"))
    settings = _settings(server, "pop3", authentication="plain", username="u@x.test", allow_plain_without_tls=True)
    with pytest.raises(ConnectError) as info:
        POP3Client(settings, "pw").__enter__()
    assert info.value.step == "auth" and info.value.hint == TOO_SLOW
