"""Reaching the mail server through a SOCKS5 or HTTP CONNECT proxy (python-socks, sync API).

The proxied socket opener (opener.open_proxied) calls `connect_via_proxy` instead of the DNS +
TCP steps when the settings name a proxy. The hop is traced as its own step, "proxy", with its
timing and a hint that says which side failed: the proxy itself (unreachable, authentication)
or the mail server as seen from the proxy (refused, unreachable). The mail server's name is
handed to the proxy (SOCKS5 remote DNS, HTTP CONNECT host), and TLS runs end to end over the
tunnel: the certificate is checked against the mail server's name, never the proxy's. No Django.

Blocked networks (TENANTMAIL_BLOCKED_NETWORKS): the PROXY's name is resolved here and its
addresses are checked before anything is sent; the tunnel is then opened to the checked
address (no second lookup a DNS answer could change). The mail server's own name is resolved
by the proxy (remote DNS), so its address cannot be checked here: the proxy's operator decides
what it may reach.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from urllib.parse import quote

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
from python_socks.sync import Proxy

from .errors import ConnectError
from .targets import refuse_blocked

PROXY_TYPES = ("socks5", "http")
_LIBRARY_TYPES = {"socks5": ProxyType.SOCKS5, "http": ProxyType.HTTP}

# SOCKS5 reply codes (RFC 1928 §6) that mean "the proxy could not reach the target".
_SOCKS_TARGET_CODES = {3: "network unreachable", 4: "host unreachable", 5: "connection refused", 6: "TTL expired"}
_SOCKS_RULE_CODES = {2: "connection not allowed by ruleset"}
_HTTP_TARGET_CODES = frozenset({502, 503, 504})
_HTTP_RULE_CODES = frozenset({403, 405})

HINT_UNREACHABLE = "proxy unreachable: check the proxy's host and port and that the proxy runs"
HINT_AUTH = (
    "proxy authentication failed: check the user name and the password of the proxy's credential "
    "(a User Credentials artifact, deployed)"
)
HINT_TARGET = (
    "the proxy runs but could not reach the mail server (target refused or unreachable from the "
    "proxy): check the mail server's host and port as seen from the proxy"
)
HINT_RULES = "the proxy refuses this destination: ask its operator to allow the mail server's host and port"


class ProxyFailed(ConnectError):
    """The proxy hop failed (step "proxy")."""

    step = "proxy"


@dataclass(frozen=True)
class ProxySettings:
    """Which proxy to go through. The password is never shown (repr, messages, logs)."""

    type: str  # socks5 | http
    host: str
    port: int
    username: str = ""
    password: str = field(default="", repr=False, compare=False)
    name: str = ""  # the profile's name, for messages ("" for an inline proxy)
    credential_name: str = ""

    def __post_init__(self) -> None:
        if self.type not in PROXY_TYPES:
            raise ValueError(f"unknown proxy type {self.type!r} (socks5 or http)")
        if not self.host:
            raise ValueError("the proxy needs a host")
        if not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError(f"proxy port must be from 1 to 65535, not {self.port!r}")

    @property
    def label(self) -> str:
        named = f" '{self.name}'" if self.name else ""
        return f"{self.type.upper()} proxy{named} at {self.host}:{self.port}"

    def url(self, *, with_password: bool = False) -> str:
        """socks5h://user:pass@host:port (remote DNS) or http://…, for other HTTP clients
        (e.g. OAuth2 token requests). Without `with_password`, the password is left out."""
        scheme = "socks5h" if self.type == "socks5" else "http"
        auth = ""
        if self.username:
            auth = quote(self.username, safe="")
            if with_password and self.password:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{auth}{host}:{self.port}"


def resolve_proxy(proxy: ProxySettings, *, blocked_networks: tuple = ()) -> list[str]:
    """The proxy's addresses, after refusing any in a blocked network (ProxyFailed, step "proxy",
    not transient: nothing is sent). Raises ProxyFailed when the name does not resolve."""
    try:
        infos = socket.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ProxyFailed(f"cannot resolve the host name of the {proxy.label}: {getattr(exc, 'strerror', None) or exc}",
                          hint="check the proxy's host name and this machine's DNS resolver") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    try:
        refuse_blocked(proxy.host, proxy.port, addresses, blocked_networks, step="proxy",
                       what=f"the {proxy.type.upper()} proxy ")
    except ConnectError as exc:
        raise ProxyFailed(exc.message, hint=exc.hint, transient=False) from None
    return addresses


def connect_via_proxy(
    proxy: ProxySettings, *, target_host: str, target_port: int, timeout: float, detail: dict,
    blocked_networks: tuple = (),
) -> socket.socket:
    """A TCP socket tunnelled to target_host:target_port through `proxy`. Fills `detail` (the
    trace step's) and raises ProxyFailed with a hint naming the failing side. The proxy's
    addresses are checked against `blocked_networks` first."""
    detail.update(type=proxy.type, proxy=f"{proxy.host}:{proxy.port}", target=f"{target_host}:{target_port}")
    if proxy.name:
        detail["profile"] = proxy.name
    if proxy.username:
        detail["user"] = proxy.username
    addresses = resolve_proxy(proxy, blocked_networks=blocked_networks)
    detail["proxy_addresses"] = addresses
    target = f"{target_host}:{target_port}"
    try:
        sock = _connect_first(proxy, addresses, target_host=target_host, target_port=target_port, timeout=timeout)
    except ProxyConnectionError as exc:
        reason = getattr(exc.__cause__, "strerror", None) or "connection failed"
        raise ProxyFailed(f"cannot reach the {proxy.label}: {reason}", hint=HINT_UNREACHABLE) from None
    except ProxyTimeoutError:
        raise ProxyFailed(
            f"no answer from the {proxy.label} within {timeout:g} s while opening the tunnel to {target}",
            hint=HINT_UNREACHABLE + "; a slow proxy or mail server: raise the connection's timeout",
        ) from None
    except ProxyError as exc:
        raise _reply_error(proxy, target, exc) from None
    except (socket.timeout, TimeoutError):
        raise ProxyFailed(f"no answer from the {proxy.label} within {timeout:g} s", hint=HINT_UNREACHABLE) from None
    except OSError as exc:  # the proxy closed the connection mid-handshake, …
        raise ProxyFailed(
            f"the {proxy.label} broke off the handshake: {exc.strerror or exc}",
            hint="check that host and port belong to a " + proxy.type.upper() + " proxy",
        ) from None
    sock.settimeout(timeout)
    detail["tunnel"] = "open"
    return sock


def _connect_first(proxy: ProxySettings, addresses: list[str], *, target_host: str, target_port: int,
                   timeout: float) -> socket.socket:
    """Open the tunnel through the first of the proxy's (checked) addresses that accepts."""
    for index, address in enumerate(addresses):
        client = Proxy(
            proxy_type=_LIBRARY_TYPES[proxy.type],
            host=address,
            port=proxy.port,
            username=proxy.username or None,
            password=proxy.password or None,
            rdns=True,  # the proxy resolves the mail server's name
        )
        try:
            return client.connect(dest_host=target_host, dest_port=target_port, timeout=timeout)
        except ProxyConnectionError:
            if index == len(addresses) - 1:
                raise
    raise ProxyConnectionError("no address")


def _reply_error(proxy: ProxySettings, target: str, exc: ProxyError) -> ProxyFailed:
    code = exc.error_code
    text = str(exc)
    who = proxy.label
    if proxy.type == "http" and code in (401, 407) or "authentication" in text.lower() or "No acceptable" in text:
        named = f" with credential '{proxy.credential_name}'" if proxy.credential_name else ""
        user = f"user {proxy.username}{named}" if proxy.username else "no user name (the proxy requires one)"
        return ProxyFailed(
            f"the {who} refused authentication for {user}: {text}", hint=HINT_AUTH, transient=False
        )
    if proxy.type == "socks5" and code in _SOCKS_TARGET_CODES or proxy.type == "http" and code in _HTTP_TARGET_CODES:
        return ProxyFailed(f"the {who} could not connect to {target}: {text}", hint=HINT_TARGET)
    if proxy.type == "socks5" and code in _SOCKS_RULE_CODES or proxy.type == "http" and code in _HTTP_RULE_CODES:
        return ProxyFailed(f"the {who} does not allow a connection to {target}: {text}", hint=HINT_RULES,
                           transient=False)
    return ProxyFailed(f"the {who} failed to open a tunnel to {target}: {text}", hint=HINT_TARGET)
