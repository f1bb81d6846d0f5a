"""Connection targets policy (connections/mail/targets.py): a blocked network is refused before
anything is sent."""
from __future__ import annotations

import ipaddress

import pytest

from connections.mail import MailSettings
from connections.mail.errors import ConnectError
from connections.mail.targets import DEFAULT_BLOCKED_NETWORKS, blocking_network, parse_networks
from connections.mail.trace import Trace

from .test_greeting import _connect


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
