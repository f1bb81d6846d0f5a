"""MailSettings of connections/mail/settings.py: default ports and validation."""
from __future__ import annotations

import pytest

from connections.mail import MailSettings


@pytest.mark.parametrize(
    "protocol, protection, port",
    [("smtp", "off", 25), ("smtp", "starttls_mandatory", 587), ("smtp", "starttls_optional", 587),
     ("smtp", "ssl_tls", 465),
     ("imap", "off", 143), ("imap", "starttls_mandatory", 143), ("imap", "starttls_optional", 143),
     ("imap", "ssl_tls", 993),
     ("pop3", "off", 110), ("pop3", "starttls_mandatory", 110), ("pop3", "starttls_optional", 110),
     ("pop3", "ssl_tls", 995)],
)
def test_default_ports(protocol, protection, port):
    assert MailSettings(protocol=protocol, host="h", protection=protection).effective_port == port
    assert MailSettings(protocol=protocol, host="h", protection=protection, port=2525).effective_port == 2525


def test_settings_reject_unknown_values():
    with pytest.raises(ValueError):
        MailSettings(protocol="nntp", host="h")
    with pytest.raises(ValueError):
        MailSettings(protocol="imap", host="h", protection="tls")
    with pytest.raises(ValueError):
        MailSettings(protocol="imap", host="h", authentication="kerberos")


@pytest.mark.parametrize("timeout", [0, 0.5, -1, 300.5, 301, 3600])
def test_settings_refuse_a_timeout_outside_1s_to_5min(timeout):
    with pytest.raises(ValueError, match="timeout"):
        MailSettings(protocol="imap", host="h", timeout=timeout)


@pytest.mark.parametrize("timeout", [1, 1.0, 30, 299.9, 300])
def test_settings_accept_a_timeout_from_1s_to_5min(timeout):
    assert MailSettings(protocol="imap", host="h", timeout=timeout).timeout == timeout


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_settings_refuse_an_impossible_port(port):
    with pytest.raises(ValueError, match="port"):
        MailSettings(protocol="imap", host="h", port=port)
