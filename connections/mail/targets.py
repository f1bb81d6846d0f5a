"""Connection targets policy: networks no connection may reach (TENANTMAIL_BLOCKED_NETWORKS).

A tenant admin chooses a connection's host and port; without a policy, the connectivity
test could reach anything next to TenantMail (the cloud's metadata service, internal
services). The check runs on the addresses the host name resolved to, just before
connecting (so a name pointing at a blocked address is caught as well as a literal
address), and refuses at once: nothing is sent to a blocked address.

By default link-local and cloud metadata addresses are blocked; loopback and private
ranges stay allowed (a mail server on the same host or in the LAN is normal) and
operators add them when they want. No Django here: the service layer passes the parsed
networks in MailSettings.blocked_networks.
"""
from __future__ import annotations

import ipaddress
from typing import Iterable, Union

from .errors import ConnectError

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

DEFAULT_BLOCKED_NETWORKS = "169.254.0.0/16,fe80::/10,fd00:ec2::254/128"
SETTING = "TENANTMAIL_BLOCKED_NETWORKS"


def parse_networks(value: str) -> tuple[Network, ...]:
    """'169.254.0.0/16, fe80::/10' -> networks. A single address is a /32 (/128).
    Raises ValueError naming the entry that is not a network."""
    networks = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"{SETTING}: {item!r} is not a network; give comma-separated CIDRs such as 10.0.0.0/8 or fd00::/8"
            ) from None
    return tuple(networks)


def blocking_network(address: str, networks: Iterable[Network]) -> Network | None:
    """The blocked network `address` (as getaddrinfo gives it) lies in, or None.
    An IPv4-mapped IPv6 address (::ffff:169.254.169.254) is judged as the IPv4 address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)
    for network in networks:
        for candidate in candidates:
            if candidate.version == network.version and candidate in network:
                return network
    return None


def refuse_blocked(host: str, port: int, addresses: Iterable[str], networks: Iterable[Network], *,
                   step: str = "tcp", what: str = "") -> None:
    """Raise ConnectError (`step`, not transient) when any address is in a blocked network;
    called after name resolution, before anything is sent. `what` names the kind of host in
    the message (e.g. "the SOCKS5 proxy "), "" for the mail server."""
    networks = tuple(networks)
    if not networks:
        return
    for address in addresses:
        network = blocking_network(address, networks)
        if network is not None:
            shown = host if host == address else f"{host} ({address})"
            raise ConnectError(
                f"connections to {what}{shown} are not allowed: {address} is in the blocked network {network} "
                f"({SETTING}); nothing was sent to port {port}",
                hint=f"use the {'proxy' if what else 'mail server'}'s own address; an operator can change "
                     f"{SETTING} if this {'proxy' if what else 'server'} really is in that network",
                step=step,
                transient=False,
            )
