"""opener.HeadStart: a session's socket (and implicit TLS) opened in the background, taken over
by the session — the same steps and errors as opening it in place — or closed unused, having
sent nothing. The real Dovecot of the fixture, and a scripted server that records every byte."""
from __future__ import annotations

import socket
import threading
from dataclasses import replace

import pytest

from connections.mail import IMAPClient, MailSettings
from connections.mail.errors import ConnectError
from connections.mail.opener import HeadStart

from .test_imap import fake, imap_script


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.mark.mailservers
def test_a_session_takes_the_socket_over_with_its_tls_and_trace(mail_servers):
    address, password = mail_servers.add_user()
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain",
                                          username=address)
    head_start = HeadStart(replace(settings, username=""))  # who logs in is not known yet
    with IMAPClient(settings, password, head_start=head_start) as imap:
        assert imap.encrypted and imap.tls_info is not None and imap.tls_info.verified
        assert imap.select("INBOX").exists == 0
    names = [step.name for step in imap.trace.steps]
    assert names[:3] == ["dns", "tcp", "tls"] and "auth" in names
    assert imap.trace is head_start.trace
    head_start.close()  # taken: nothing left to close


def test_a_refused_connection_is_raised_when_the_session_takes_it():
    settings = MailSettings(protocol="imap", host="127.0.0.1", port=_closed_port(), protection="ssl_tls",
                            username="u@x.test", timeout=5)
    head_start = HeadStart(settings)
    with pytest.raises(ConnectError) as err:
        IMAPClient(settings, "pw", head_start=head_start).connect()
    assert err.value.step == "tcp" and "refused" in err.value.message
    assert [(s.name, s.ok) for s in head_start.trace.steps][-1] == ("tcp", False)


def test_an_unused_head_start_is_closed_having_sent_nothing(scripted):
    seen: list[bytes] = []
    done = threading.Event()

    def handler(conn):
        conn.send("* OK [CAPABILITY IMAP4rev1] fake ready\r\n")
        try:
            seen.append(conn.readline())  # b"" once the client closed
        except ConnectionResetError:  # closed with our greeting unread: a reset instead
            seen.append(b"")
        finally:
            done.set()

    server = scripted(handler)
    head_start = HeadStart(fake(server))
    head_start._future.result(timeout=5)  # connected (close() before that cancels the connect itself)
    head_start.close()
    assert done.wait(5)
    assert seen == [b""] and server.data == b""


def test_a_head_start_for_other_settings_is_refused(scripted):
    server = scripted(imap_script("IMAP4rev1"))
    head_start = HeadStart(fake(server))
    with pytest.raises(ValueError):
        IMAPClient(fake(server, port=server.port + 1), "pw", head_start=head_start).connect()
    head_start.close()
