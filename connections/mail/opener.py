"""Opening a session's socket: the pluggable opener (directly, or through a proxy), then
implicit TLS for protection SSL/TLS. Every step is traced: dns + tcp, or proxy; then tls.

An opener is a callable `(settings, trace) -> socket` that returns a connected TCP socket with
the connection's timeout, tracing its own steps. `opener_for` picks one from the settings: the
one place a new way to reach a server (another proxy kind, a tunnel) plugs in.
"""
from __future__ import annotations

import socket
import ssl
import threading
from concurrent.futures import Future
from dataclasses import replace
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


class HeadStart:
    """A session's socket opened in the background (TCP or proxy, then implicit TLS) while the
    caller does other work — a poll writes its history row and takes its mailbox lock meanwhile.
    The session takes the socket over (`MailSession(..., head_start=...)`): the same steps,
    traced into `trace`, the same errors, raised when it is taken. Nothing is sent before the
    session takes it; `close()` closes a socket nobody took.
    """

    def __init__(self, settings: MailSettings, opener: SocketOpener | None = None, trace: Trace | None = None) -> None:
        self.settings = settings
        self.trace = trace if trace is not None else Trace()  # the session's trace (it adopts this one)
        self._future: Future = run_in_background(open_socket, settings, self.trace, opener)
        self._taken = False

    def take(self, settings: MailSettings) -> tuple[socket.socket, TLSInfo | None]:
        if _transport(settings) != _transport(self.settings):
            raise ValueError("the head start was opened with other settings (server, TLS or proxy)")
        self._taken = True
        return self._future.result()

    def failure(self, *, wait: float = 0.0) -> BaseException | None:
        """The error opening the socket ended with (a refused connection, …) if it has ended so
        within `wait` seconds, else None."""
        try:
            return None if self._future.cancelled() else self._future.exception(timeout=wait)
        except TimeoutError:
            return None

    def close(self) -> None:
        """Close the socket if nobody took it: now, or once it is open (never waits)."""
        if self._taken:
            return
        self._taken = True
        if not self._future.cancel():
            self._future.add_done_callback(_close_unused)


def _close_unused(future: Future) -> None:
    if not future.cancelled() and future.exception() is None:
        sock, _tls = future.result()
        sock.close()


def _transport(settings: MailSettings) -> MailSettings:
    """The settings without who logs in: what the socket and TLS depend on."""
    return replace(settings, username="", credential_name="", credential_version=None)


def run_in_background(fn: Callable, *args, **kwargs) -> Future:
    """`fn` on a thread of its own (a head start): never queued behind another
    one that waits for a slow server, and nothing to re-make in a forked worker child."""
    future: Future = Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to whoever asks the future
                future.set_exception(exc)

    threading.Thread(target=run, name="mail-background", daemon=True).start()
    return future


class PreconnectedSocket:
    """Mixin for imaplib/poplib clients: use a socket this layer already connected (and
    maybe wrapped in TLS) instead of letting the library open its own."""

    def __init__(self, sock: socket.socket, host: str, port: int, timeout: float) -> None:
        self._ready_sock = sock
        super().__init__(host, port, timeout)  # type: ignore[call-arg]

    def _create_socket(self, timeout):  # the libraries' hook
        sock, self._ready_sock = self._ready_sock, None
        return sock
