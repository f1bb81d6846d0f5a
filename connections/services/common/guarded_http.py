"""Outgoing HTTP(S) to operator-given URLs, held to the connection targets policy.

Webhooks (message.stored, outbox.*), alert webhooks and the guided setup's autoconfig /
autodiscover lookups post to or fetch URLs a tenant admin or operator typed. Like the mail
connections (connections/mail/targets.py, called from open_socket), they must not reach
the networks of TENANTMAIL_BLOCKED_NETWORKS (by default link-local and cloud metadata:
169.254.169.254 …).

The host name is resolved once, every address is checked (targets.refuse_blocked: the one
policy, the same clear message), and the socket is connected to exactly those checked
addresses — a second DNS answer cannot slip in between check and connect. The Host header
and the TLS server name / certificate verification stay on the name, because only the
socket layer (http.client's `_create_connection`) is replaced.

    conn = GuardedHTTPSConnection("hooks.example.com", 443, timeout=10, context=ssl.create_default_context())
    with open_url(urllib.request.Request(url), timeout=4) as response: ...

A refused target raises TargetBlocked (a ConnectError, never transient): callers treat it
as permanent. These requests go directly, not through HTTP(S)_PROXY from the environment
(through a proxy the address could not be checked).
"""
from __future__ import annotations

import http.client
import socket
import ssl
import urllib.request
from typing import Iterable

from ...mail.errors import ConnectError
from ...mail.targets import SETTING, Network, refuse_blocked
from ..setup.connection_settings import blocked_networks


class TargetBlocked(ConnectError):
    """The URL's host resolves into TENANTMAIL_BLOCKED_NETWORKS; nothing was sent."""

    transient = False


def _refuse(host: str, port: int, addresses: Iterable[str], networks: tuple[Network, ...]) -> None:
    try:
        refuse_blocked(host, port, addresses, networks)
    except ConnectError as exc:
        raise TargetBlocked(exc.message, step="tcp", transient=False,
                            hint=f"point the URL at a host outside that network; an operator can change {SETTING} "
                                 "if this host really is in it") from None


def guarded_create_connection(address: tuple[str, int], timeout=socket._GLOBAL_DEFAULT_TIMEOUT,
                              source_address=None, *, networks: tuple[Network, ...] | None = None
                              ) -> socket.socket:
    """socket.create_connection, but the resolved addresses are checked against the
    blocked networks first and the socket connects only to those checked addresses."""
    host, port = address
    networks = blocked_networks() if networks is None else networks
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    _refuse(host, port, (info[4][0] for info in infos), networks)
    last: OSError | None = None
    for family, type_, proto, _canon, sockaddr in infos:
        sock = socket.socket(family, type_, proto)
        try:
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"{host} resolved to no address")


class _Guarded:
    def _pin(self, networks: tuple[Network, ...] | None) -> None:
        networks = blocked_networks() if networks is None else networks

        def create(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None):
            return guarded_create_connection(address, timeout, source_address, networks=networks)

        self._create_connection = create


class GuardedHTTPConnection(_Guarded, http.client.HTTPConnection):
    def __init__(self, *args, networks: tuple[Network, ...] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pin(networks)


class GuardedHTTPSConnection(_Guarded, http.client.HTTPSConnection):
    def __init__(self, *args, networks: tuple[Network, ...] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pin(networks)


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(GuardedHTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(GuardedHTTPSConnection, req, context=ssl.create_default_context())


def open_url(request: urllib.request.Request | str, *, timeout: float):
    """urllib.request.urlopen through the guard (redirect targets are checked too).
    Raises TargetBlocked, urllib.error.URLError/HTTPError, OSError, ValueError."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _HTTPHandler(), _HTTPSHandler())
    return opener.open(request, timeout=timeout)
