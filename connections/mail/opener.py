"""Opening a session's socket: the pluggable opener (directly, or through a proxy), then
implicit TLS for protection SSL/TLS. Every step is traced: dns + tcp, or proxy; then tls.

An opener is a callable `(settings, trace) -> socket` that returns a connected TCP socket with
the connection's timeout, tracing its own steps. `opener_for` picks one from the settings: the
one place a new way to reach a server (another proxy kind, a tunnel) plugs in.
"""
from __future__ import annotations

import socket
import ssl
from typing import Callable

from .errors import ConnectError, TLSError
from .settings import MailSettings
from .targets import refuse_blocked
from .tls import TLSInfo, make_ssl_context, tls_error_from, tls_info_from_socket
from .trace import Trace
from .wording import network_error, where

SocketOpener = Callable[[MailSettings, Trace], socket.socket]


def open_direct(settings: MailSettings, trace: Trace) -> socket.socket:
    """DNS and TCP, each traced; the resolved addresses are checked against blocked networks."""
    host, port = settings.host, settings.effective_port
    with trace.step("dns") as detail:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ConnectError(
                f"cannot resolve host name {host!r}: {exc.strerror}",
                hint="check the spelling of the host name and this machine's DNS resolver",
                step="dns",
            ) from None
        except UnicodeError:
            raise ConnectError(f"invalid host name {host!r}", step="dns", transient=False) from None
        detail["host"] = host
        detail["addresses"] = sorted({info[4][0] for info in infos})
    with trace.step("tcp") as detail:
        refuse_blocked(host, port, (info[4][0] for info in infos), settings.blocked_networks)
        last: BaseException | None = None
        for family, type_, proto, _canon, addr in infos:
            candidate = socket.socket(family, type_, proto)
            candidate.settimeout(settings.timeout)
            try:
                candidate.connect(addr)
            except OSError as exc:
                candidate.close()
                last = exc
                continue
            detail["address"] = addr[0]
            detail["port"] = port
            return candidate
        raise network_error(last or OSError("no address"), settings, step="tcp", doing="connecting")


def open_proxied(settings: MailSettings, trace: Trace) -> socket.socket:
    """Through settings.proxy: one "proxy" step instead of dns + tcp (the proxy resolves)."""
    from .proxy import connect_via_proxy

    with trace.step("proxy") as detail:
        return connect_via_proxy(
            settings.proxy, target_host=settings.host, target_port=settings.effective_port,
            timeout=settings.timeout, detail=detail, blocked_networks=settings.blocked_networks,
        )


def opener_for(settings: MailSettings) -> SocketOpener:
    return open_proxied if settings.proxy is not None else open_direct


def open_socket(
    settings: MailSettings, trace: Trace, opener: SocketOpener | None = None
) -> tuple[socket.socket, TLSInfo | None]:
    """The session's socket, TLS-wrapped for protection ssl_tls (with its TLSInfo)."""
    if not settings.host:
        raise ConnectError("no host name configured", hint="set the connection's host", step="dns", transient=False)
    sock = (opener or opener_for(settings))(settings, trace)
    if settings.protection != "ssl_tls":
        return sock, None
    with trace.step("tls") as detail:
        detail["mode"] = "implicit TLS"
        tls_sock, tls_info = wrap_tls(sock, settings, starttls=None)
        detail.update(tls_info.to_dict())
    return tls_sock, tls_info


def wrap_tls(sock: socket.socket, settings: MailSettings, *, starttls: str | None) -> tuple[ssl.SSLSocket, TLSInfo]:
    context = make_ssl_context(settings)
    try:
        tls = context.wrap_socket(sock, server_hostname=settings.tls_hostname)
    except ssl.SSLError as exc:
        sock.close()
        if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            raise TLSError(
                f"the server at {where(settings)} closed the connection during the TLS handshake",
                hint="the port may not speak TLS, or the server refuses TLS 1.2+",
                transient=True,
            ) from None
        raise tls_error_from(exc, settings, starttls=starttls) from None
    except OSError as exc:
        sock.close()
        # Implicit TLS comes before the greeting: the server has not answered yet.
        raise network_error(
            exc, settings, step="tls", doing="negotiating TLS", answered=starttls is not None
        ) from None
    return tls, tls_info_from_socket(tls, verified=settings.verify_certificate)


class PreconnectedSocket:
    """Mixin for imaplib/poplib clients: use a socket this layer already connected (and
    maybe wrapped in TLS) instead of letting the library open its own."""

    def __init__(self, sock: socket.socket, host: str, port: int, timeout: float) -> None:
        self._ready_sock = sock
        super().__init__(host, port, timeout)  # type: ignore[call-arg]

    def _create_socket(self, timeout):  # the libraries' hook
        sock, self._ready_sock = self._ready_sock, None
        return sock
