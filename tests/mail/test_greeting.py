"""Wrong greetings (connections/mail/greeting.py), at the protocol layer.

A mail server of another protocol (the real Dovecot/Postfix on the wrong port) is quoted;
a service that is not a mail server (a loopback TCP server sending a non-mail banner) is
never quoted.
"""
from __future__ import annotations

import pytest

from connections.mail import MailSettings
from connections.mail.errors import MailError, ProtocolError
from connections.mail.greeting import mail_protocol_of
from connections.mail.imap import IMAPClient
from connections.mail.pop3 import POP3Client
from connections.mail.smtp import SMTPClient
from connections.mail.trace import Trace

CLIENTS = {"imap": IMAPClient, "pop3": POP3Client, "smtp": SMTPClient}
BANNER = "INTERNAL-SERVICE redis_version:7.0.0 secret-build-4711"


def _connect(settings: MailSettings, trace: Trace | None = None) -> MailError:
    client = CLIENTS[settings.protocol](settings, None if settings.protocol == "smtp" else "pw", trace=trace)
    with pytest.raises(MailError) as info:
        client.__enter__()
    return info.value


def _everything_shown(error: MailError, trace: Trace) -> str:
    return " ".join([error.message, error.hint, *(f"{s.message} {s.hint} {s.detail}" for s in trace.steps)])


@pytest.mark.smoke
def test_mail_greetings_are_recognised():
    assert mail_protocol_of("* OK [CAPABILITY IMAP4rev1] Dovecot ready.") == "imap"
    assert mail_protocol_of(b"+OK Dovecot ready.\r\n") == "pop3" and mail_protocol_of("-ERR busy") == "pop3"
    assert mail_protocol_of("220 mx.example ESMTP") == "smtp" and mail_protocol_of("421-busy") == "smtp"
    for banner in (BANNER, "SSH-2.0-OpenSSH_9.2", "HTTP/1.1 400 Bad Request", "200 OK", "+OKAY", ""):
        assert mail_protocol_of(banner) is None, banner


@pytest.mark.mailservers
@pytest.mark.parametrize("protocol,listener,other,quoted", [
    ("imap", "pop3_notls", "POP3", "+OK TenantMail test Dovecot"),
    ("pop3", "imap_notls", "IMAP", "* OK"),
    ("smtp", "imap_notls", "IMAP", "* OK"),
    ("imap", "smtp_notls", "SMTP", "220 "),
    ("pop3", "smtp_notls", "SMTP", "220 "),
])
def test_a_mail_server_of_another_protocol_is_quoted(mail_servers, protocol, listener, other, quoted):
    settings = MailSettings(protocol=protocol, host=mail_servers.host, port=mail_servers.ports[listener],
                            protection="off", authentication="none" if protocol == "smtp" else "plain",
                            username="u@example.test", timeout=10)
    error = _connect(settings)
    assert isinstance(error, ProtocolError) and error.step == "greeting" and not error.transient
    assert f"greeted as a{'n' if other != 'POP3' else ''} {other} server" in error.message
    assert quoted in error.message, error.message
    assert f"this port belongs to {other}" in error.hint


@pytest.mark.parametrize("protocol", ["imap", "pop3", "smtp"])
def test_a_service_that_is_not_a_mail_server_is_never_quoted(scripted, protocol):
    server = scripted(lambda conn: (conn.send(BANNER + "\r\n"), conn.readline()))
    trace = Trace()
    error = _connect(MailSettings(protocol=protocol, host=server.host, port=server.port, protection="off",
                                  authentication="none" if protocol == "smtp" else "plain", timeout=5), trace)
    assert error.step == "greeting" and "is not a mail server" in error.message
    shown = _everything_shown(error, trace)
    for piece in ("INTERNAL-SERVICE", "redis_version", "secret-build-4711"):
        assert piece not in shown
