"""The asyncio IMAP IDLE speaker against the real Dovecot (and through a real SOCKS5 proxy)."""
from __future__ import annotations

import asyncio
import queue
import threading

import pytest

from connections.mail.errors import AuthenticationFailed
from connections.mail.idle import IdleUnsupported, run_idle_session
from connections.mail.proxy import ProxySettings
from connections.mail.settings import MailSettings

pytestmark = pytest.mark.mailservers


class _Loop:
    """An event loop in a thread, running one IDLE session; events land in a queue."""

    def __init__(self, settings, password, **kw) -> None:
        self.events: queue.Queue = queue.Queue()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def main():
            self.stop = asyncio.Event()
            await run_idle_session(settings, password, stop=self.stop,
                                   on_event=lambda k, d: self.events.put((k, d)), **kw)

        self.future = asyncio.run_coroutine_threadsafe(main(), self.loop)

    def next_event(self, timeout: float = 15.0) -> tuple[str, str]:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            if self.future.done():
                self.future.result()  # raises the session's error
            raise

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        try:
            self.future.result(timeout=15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)


@pytest.mark.parametrize("protection,authentication,mechanism", [
    ("ssl_tls", "plain", None), ("starttls_mandatory", "encrypted", None), ("ssl_tls", "plain", "LOGIN"),
])
def test_idle_reports_new_mail(mail_servers, protection, authentication, mechanism):
    address, password = mail_servers.add_user(password="pässwörd {1} \"x\"")  # LOGIN needs literals for it
    settings = mail_servers.mail_settings(protocol="imap", protection=protection, authentication=authentication,
                                          username=address)
    session = _Loop(settings, password, mechanism=mechanism)
    try:
        assert session.next_event() == ("connected", "")
        mail_servers.append(address, [b"Subject: push\r\n\r\nnew\r\n"])
        kind, detail = session.next_event()
        assert kind == "exists" and "EXISTS" in detail.upper()
    finally:
        session.close()


def test_idle_is_reissued_and_survives(mail_servers):
    address, password = mail_servers.add_user()
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain",
                                          username=address)
    session = _Loop(settings, password, reissue_after=1)
    try:
        assert session.next_event()[0] == "connected"
        # Several DONE / IDLE rounds later the session still reports mail.
        threading.Event().wait(2.5)
        mail_servers.append(address, [b"Subject: later\r\n\r\nx\r\n"])
        assert session.next_event()[0] == "exists"
        assert not session.future.done()
    finally:
        session.close()


def test_idle_through_socks5_proxy(mail_servers, socks_proxy):
    address, password = mail_servers.add_user()
    proxy = ProxySettings(type="socks5", host=socks_proxy.host, port=socks_proxy.port,
                          username=socks_proxy.username, password=socks_proxy.password)
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain",
                                          username=address, proxy=proxy)
    before = socks_proxy.tunnels_to(settings.effective_port)
    session = _Loop(settings, password)
    try:
        assert session.next_event()[0] == "connected"
        assert socks_proxy.tunnels_to(settings.effective_port) == before + 1
        mail_servers.append(address, [b"Subject: via socks\r\n\r\nx\r\n"])
        assert session.next_event()[0] == "exists"
    finally:
        session.close()


def test_server_without_idle(mail_servers):
    address, password = mail_servers.add_user()
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain",
                                          username=address, listener="imaps_noidle")
    session = _Loop(settings, password)
    with pytest.raises(IdleUnsupported) as err:
        session.future.result(timeout=15)
    assert "does not offer IDLE" in err.value.message
    session.loop.call_soon_threadsafe(session.loop.stop)


def test_wrong_password(mail_servers):
    address, _password = mail_servers.add_user()
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain",
                                          username=address)
    session = _Loop(settings, "not-the-password")
    with pytest.raises(AuthenticationFailed) as err:
        session.future.result(timeout=15)
    assert "not-the-password" not in str(err.value) and address in err.value.message
    session.loop.call_soon_threadsafe(session.loop.stop)



@pytest.mark.parametrize("via_proxy", [True, False])
def test_idle_refuses_a_blocked_address_before_connecting(via_proxy):
    from connections.mail.errors import ConnectError
    from connections.mail.idle import _Conn
    from connections.mail.settings import MailSettings
    from connections.mail.targets import DEFAULT_BLOCKED_NETWORKS, parse_networks

    proxy = ProxySettings(type="socks5", host="169.254.169.254", port=1080) if via_proxy else None
    settings = MailSettings(protocol="imap", host="mail.example.org" if via_proxy else "169.254.169.254", port=993,
                            protection="ssl_tls", timeout=300, proxy=proxy,
                            blocked_networks=parse_networks(DEFAULT_BLOCKED_NETWORKS))
    with pytest.raises(ConnectError) as info:
        asyncio.run(_Conn(settings).open())
    assert info.value.step == ("proxy" if via_proxy else "tcp") and not info.value.transient
    what = "the SOCKS5 proxy " if via_proxy else ""
    port = 1080 if via_proxy else 993
    assert info.value.message == (f"connections to {what}169.254.169.254 are not allowed: 169.254.169.254 is in the "
                                  "blocked network 169.254.0.0/16 (TENANTMAIL_BLOCKED_NETWORKS); nothing was sent "
                                  f"to port {port}")


def test_mail_that_arrives_while_idle_is_ended_is_reported(scripted):
    """A server may send EXISTS after DONE, before IDLE's tagged OK (mail landing while IDLE
    is re-issued): the session reports it, it does not read it away."""
    def handler(conn):
        conn.send("* OK [CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN] fake ready\r\n")
        dones = 0
        while True:
            line = conn.readline()
            if not line:
                return
            if line.strip().upper() == b"DONE":
                dones += 1
                if dones == 1:
                    conn.send("* 1 EXISTS\r\n")
                conn.send(f"{idle_tag} OK Idle completed\r\n")
                continue
            tag, _, rest = line.decode().partition(" ")
            verb = rest.split(" ")[0].strip().upper()
            if verb == "IDLE":
                idle_tag = tag
                conn.send("+ idling\r\n")
            elif verb == "CAPABILITY":
                conn.send(f"* CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN\r\n{tag} OK done\r\n")
            elif verb == "AUTHENTICATE":
                conn.send("+ \r\n")
                conn.readline()  # the credentials
                conn.send(f"{tag} OK logged in\r\n")
            elif verb == "SELECT" or verb == "EXAMINE":
                conn.send(f"* 0 EXISTS\r\n{tag} OK [READ-ONLY] done\r\n")
            elif verb == "LOGOUT":
                conn.send(f"* BYE bye\r\n{tag} OK done\r\n")
                return
            else:
                conn.send(f"{tag} OK done\r\n")

    server = scripted(handler)
    settings = MailSettings(protocol="imap", host=server.host, port=server.port, protection="off",
                            authentication="plain", username="u", allow_plain_without_tls=True, timeout=5)
    session = _Loop(settings, "pw", reissue_after=1)
    try:
        assert session.next_event()[0] == "connected"
        assert session.next_event(timeout=10)[0] == "exists"
    finally:
        session.close()
