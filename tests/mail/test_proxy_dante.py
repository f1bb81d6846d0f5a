"""The mail clients through Dante (danted), the SOCKS5 server companies run in production,
beside the microsocks tests of test_proxy.py: the same tunnel, TLS end to end, proved by
danted's own log."""
from __future__ import annotations

import pytest

from connections.mail import IMAPClient, SMTPClient
from connections.mail.proxy import ProxySettings

pytestmark = pytest.mark.mailservers


def _via(dante) -> ProxySettings:
    return ProxySettings(type="socks5", host=dante.host, port=dante.port, username="", password="",
                         name="corp-dante", credential_name="")


def test_imap_through_dante(mail_servers, dante_proxy):
    address, password = mail_servers.add_user()
    mail_servers.append(address, [b"Subject: via dante\r\n\r\nhello dante\r\n"])
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain",
                                          username=address, host="localhost", tls_server_name="127.0.0.1",
                                          proxy=_via(dante_proxy))
    before = dante_proxy.tunnels_to(settings.effective_port)
    with IMAPClient(settings, password) as imap:
        imap.select("INBOX")
        [(_uid, raw)] = list(imap.fetch_many(imap.search_uids(unseen_only=False)))
        assert b"hello dante" in raw and imap.tls_info is not None and imap.tls_info.verified
    assert imap.trace.steps[0].name == "proxy" and imap.trace.steps[0].ok
    assert dante_proxy.tunnels_to(settings.effective_port) == before + 1


def test_smtp_through_dante(mail_servers, dante_proxy):
    address, password = mail_servers.add_user()
    settings = mail_servers.mail_settings(protocol="smtp", protection="starttls_mandatory",
                                          authentication="plain", username=address, proxy=_via(dante_proxy))
    before = dante_proxy.tunnels_to(settings.effective_port)
    with SMTPClient(settings, password) as smtp:
        smtp.send(sender=address, recipients=[address],
                  message=b"From: " + address.encode() + b"\r\nSubject: d\r\n\r\nbody\r\n")
    mail_servers.wait_for_messages(address, count=1)
    assert dante_proxy.tunnels_to(settings.effective_port) == before + 1
