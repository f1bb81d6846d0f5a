"""IMAP, POP3 and SMTP through real proxies on loopback (microsocks: SOCKS5 with user/password;
tinyproxy: HTTP CONNECT with BasicAuth). Each test reads the proxy's own log to prove the
traffic went through it; dead, refusing and wrongly authenticated proxies give clear errors."""
from __future__ import annotations

import dataclasses

import pytest

from connections.mail import IMAPClient, POP3Client, SMTPClient
from connections.mail.errors import ConnectError, TLSError
from connections.mail.probe import run_probe
from connections.mail.proxy import HINT_AUTH, HINT_TARGET, HINT_UNREACHABLE, ProxyFailed, ProxySettings

pytestmark = pytest.mark.mailservers


def _proxy(p, *, password: str | None = None, with_auth: bool = True) -> ProxySettings:
    return ProxySettings(type=p.type, host=p.host, port=p.port, username=p.username if with_auth else "",
                         password=(p.password if password is None else password) if with_auth else "",
                         name="corp", credential_name="proxy-login")


@pytest.fixture(params=["socks5", "http"])
def proxy(request, socks_proxy, http_proxy):
    return socks_proxy if request.param == "socks5" else http_proxy


def test_imap_over_proxy_end_to_end_tls(mail_servers, proxy):
    address, password = mail_servers.add_user()
    mail_servers.append(address, [b"Subject: via proxy\r\n\r\nhello\r\n"])
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain",
                                          username=address, host="localhost", tls_server_name="127.0.0.1",
                                          proxy=_proxy(proxy))
    before = proxy.tunnels_to(settings.effective_port)
    with IMAPClient(settings, password) as imap:
        imap.select("INBOX")
        [(uid, raw)] = list(imap.fetch_many(imap.search_uids(unseen_only=False)))
        assert b"hello" in raw
        assert imap.tls_info is not None and imap.tls_info.verified
    names = [s.name for s in imap.trace.steps]
    assert names[:2] == ["proxy", "tls"] and "dns" not in names and "tcp" not in names
    step = imap.trace.steps[0]
    assert step.ok and step.detail["type"] == proxy.type and step.detail["target"].startswith("localhost:")
    # The proxy resolved the mail server's name itself (SOCKS5 remote DNS / CONNECT host).
    assert proxy.tunnels_to(settings.effective_port) == before + 1
    assert f"localhost:{settings.effective_port}" in proxy.log()


@pytest.mark.parametrize("protocol,protection", [("pop3", "starttls_mandatory"), ("smtp", "ssl_tls")])
def test_pop3_and_smtp_over_proxy(mail_servers, proxy, protocol, protection):
    address, password = mail_servers.add_user()
    settings = mail_servers.mail_settings(protocol=protocol, protection=protection, authentication="plain",
                                          username=address, proxy=_proxy(proxy))
    before = proxy.tunnels_to(settings.effective_port)
    if protocol == "pop3":
        mail_servers.append(address, [b"Subject: x\r\n\r\n1\r\n"])
        with POP3Client(settings, password) as pop:
            assert pop.stat()[0] == 1
    else:
        with SMTPClient(settings, password) as smtp:
            smtp.send(sender=address, recipients=[address],
                      message=b"From: " + address.encode() + b"\r\nSubject: p\r\n\r\nbody\r\n")
        mail_servers.wait_for_messages(address, count=1)
    assert proxy.tunnels_to(settings.effective_port) == before + 1


def test_tls_is_checked_against_the_mail_servers_name_not_the_proxys(mail_servers, socks_proxy):
    address, password = mail_servers.add_user()
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain",
                                          username=address, listener="imaps_wronghost", proxy=_proxy(socks_proxy))
    with pytest.raises(TLSError) as err:
        IMAPClient(settings, password).connect()
    assert "127.0.0.1" in err.value.message and err.value.step == "tls"


def test_dead_proxy_is_a_clear_error(mail_servers, dead_proxy_port):
    address, password = mail_servers.add_user()
    dead = ProxySettings(type="socks5", host="127.0.0.1", port=dead_proxy_port)
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain",
                                          username=address, proxy=dead)
    report = run_probe(settings, password)
    assert not report.ok
    step = report.failed_step
    assert step.name == "proxy" and f"127.0.0.1:{dead_proxy_port}" in step.message
    assert "cannot reach the SOCKS5 proxy" in step.message and step.hint == HINT_UNREACHABLE
    assert step.duration_ms >= 0


def test_wrong_proxy_password_names_the_proxy_credential_never_the_password(mail_servers, proxy):
    address, password = mail_servers.add_user()
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain",
                                          username=address, proxy=_proxy(proxy, password="wrong-secret-77"))
    with pytest.raises(ProxyFailed) as err:
        IMAPClient(settings, password).connect()
    exc = err.value
    assert exc.step == "proxy" and exc.hint == HINT_AUTH and exc.transient is False
    assert proxy.username in exc.message and "proxy-login" in exc.message
    assert "wrong-secret-77" not in str(exc) and "wrong-secret-77" not in repr(settings)
    # No user name at all where the proxy requires one: the same clear error.
    settings = dataclasses.replace(settings, proxy=_proxy(proxy, with_auth=False))
    with pytest.raises(ProxyFailed) as err:
        IMAPClient(settings, password).connect()
    assert err.value.hint == HINT_AUTH


def test_target_refused_from_the_proxy(mail_servers, proxy, dead_proxy_port):
    address, password = mail_servers.add_user()
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain",
                                          username=address, port=dead_proxy_port, proxy=_proxy(proxy))
    with pytest.raises(ConnectError) as err:
        IMAPClient(settings, password).connect()
    assert err.value.step == "proxy" and err.value.hint == HINT_TARGET
    assert f"127.0.0.1:{dead_proxy_port}" in err.value.message


def test_proxy_url_keeps_the_password_out_unless_asked():
    p = ProxySettings(type="socks5", host="proxy.acme.example", port=1080, username="u@x", password="p:w")
    assert p.url() == "socks5h://u%40x@proxy.acme.example:1080"
    assert p.url(with_password=True) == "socks5h://u%40x:p%3Aw@proxy.acme.example:1080"
    assert "p:w" not in repr(p)
    assert ProxySettings(type="http", host="10.0.0.5", port=3128).url() == "http://10.0.0.5:3128"
