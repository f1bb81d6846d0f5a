"""Connection targets policy and wrong greetings, at the protocol layer.

A mail server of another protocol (the real Dovecot/Postfix on the wrong port) is quoted;
a service that is not a mail server (a loopback TCP server sending a non-mail banner) is
never quoted; a blocked network is refused before anything is sent.
"""
from __future__ import annotations

import ipaddress

import pytest

from connections.mail import MailSettings
from connections.mail.trace import Trace
from connections.mail.errors import ConnectError, MailError, ProtocolError
from connections.mail.greeting import mail_protocol_of
from connections.mail.imap import IMAPClient
from connections.mail.pop3 import POP3Client
from connections.mail.smtp import SMTPClient
from connections.mail.targets import DEFAULT_BLOCKED_NETWORKS, blocking_network, parse_networks

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


@pytest.mark.smoke
def test_networks_parse_and_match():
    networks = parse_networks(DEFAULT_BLOCKED_NETWORKS)
    assert networks == (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"),
                        ipaddress.ip_network("fd00:ec2::254/128"))
    assert blocking_network("169.254.169.254", networks) == networks[0]
    assert blocking_network("::ffff:169.254.169.254", networks) == networks[0]
    assert blocking_network("fe80::1%eth0", networks) == networks[1]
    assert blocking_network("fd00:ec2::254", networks) == networks[2]
    for allowed in ("127.0.0.1", "10.1.2.3", "192.168.1.1", "::1", "fd00:ec2::253", "2001:db8::1"):
        assert blocking_network(allowed, networks) is None
    assert parse_networks(" 10.0.0.0/8 ,, 127.0.0.1 ") == (ipaddress.ip_network("10.0.0.0/8"),
                                                           ipaddress.ip_network("127.0.0.1/32"))
    with pytest.raises(ValueError, match="'10.0.0.0/33' is not a network"):
        parse_networks("10.0.0.0/33")


@pytest.mark.parametrize("host", ["169.254.169.254", "2852039166", "::ffff:169.254.169.254"])
def test_metadata_address_is_refused_before_connecting(host):
    trace = Trace()
    settings = MailSettings(protocol="imap", host=host, port=80, protection="off", timeout=300,
                            blocked_networks=parse_networks(DEFAULT_BLOCKED_NETWORKS))
    error = _connect(settings, trace)
    assert isinstance(error, ConnectError) and error.step == "tcp" and not error.transient
    assert "169.254.169.254 is in the blocked network 169.254.0.0/16 (TENANTMAIL_BLOCKED_NETWORKS)" in error.message
    tcp = trace.steps[-1]
    assert tcp.name == "tcp" and not tcp.ok and "address" not in tcp.detail  # never connected


def test_loopback_is_allowed_by_default_and_refused_when_listed(scripted):
    server = scripted(lambda conn: (conn.send("* OK ready\r\n"), conn.readline()))
    allowed = MailSettings(protocol="imap", host=server.host, port=server.port, protection="off", timeout=5,
                           blocked_networks=parse_networks(DEFAULT_BLOCKED_NETWORKS))
    _connect(allowed)  # the scripted server then hangs up: some error, after connecting
    assert len(server._conns) == 1
    listed = MailSettings(protocol="imap", host="localhost", port=server.port, protection="off", timeout=5,
                          blocked_networks=parse_networks("127.0.0.0/8,::1/128"))
    error = _connect(listed)
    assert isinstance(error, ConnectError) and "are not allowed" in error.message and "localhost (" in error.message
    assert len(server._conns) == 1  # the refused one never reached the server
