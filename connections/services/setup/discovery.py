"""Server settings of a domain from the network, when reachable: the autoconfig document
(Thunderbird's format), the autodiscover document (Microsoft's POX format) and DNS SRV
records (RFC 6186 / RFC 8314). Every lookup is short (TENANTMAIL_DISCOVERY_TIMEOUT) and
bounded in size; a failure is only "not found". The URLs are settings so that a test (or
a closed network) can point them elsewhere. The HTTP lookups go through guarded_http: a
host in TENANTMAIL_BLOCKED_NETWORKS is not contacted (logged, and "not found").
"""
from __future__ import annotations

import logging
import urllib.request
import xml.etree.ElementTree as ET
from typing import Iterable

from django.conf import settings

from connections.conf import conf
from ..common.guarded_http import TargetBlocked, open_url
from .providers import Server

log = logging.getLogger(__name__)
MAX_DOCUMENT = 256 * 1024

DEFAULT_AUTOCONFIG_URLS = (
    "https://autoconfig.{domain}/mail/config-v1.1.xml?emailaddress={email}",
    "https://{domain}/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress={email}",
)
DEFAULT_AUTODISCOVER_URLS = (
    "https://autodiscover.{domain}/autodiscover/autodiscover.xml",
    "https://{domain}/autodiscover/autodiscover.xml",
)
SOCKET_TYPES = {"SSL": "ssl_tls", "STARTTLS": "starttls_mandatory", "plain": "off"}
AUTHENTICATIONS = {"password-cleartext": "plain", "plain": "plain", "password-encrypted": "encrypted",
                   "secure": "encrypted", "none": "none"}


def _timeout() -> float:
    return float(conf.TENANTMAIL_DISCOVERY_TIMEOUT)


def _fetch(url: str, *, data: bytes | None = None) -> bytes | None:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "text/xml"} if data else {})
    try:
        with open_url(request, timeout=_timeout()) as response:  # TENANTMAIL_BLOCKED_NETWORKS checked
            body = response.read(MAX_DOCUMENT + 1)
    except TargetBlocked as exc:
        log.warning("discovery: %s not fetched: %s", url.split("?")[0], exc.message)
        return None
    except (OSError, ValueError) as exc:
        log.info("discovery: %s not reachable (%s)", url.split("?")[0], type(exc).__name__)
        return None
    return body if len(body) <= MAX_DOCUMENT else None


def _parse(body: bytes) -> ET.Element | None:
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(el: ET.Element, name: str) -> str:
    for c in el:
        if _local(c.tag).lower() == name.lower():
            return (c.text or "").strip()
    return ""


def autoconfig(*, email: str, domain: str) -> tuple[list[Server], str] | None:
    """(servers, source URL) from the first autoconfig document found."""
    urls = getattr(settings, "TENANTMAIL_AUTOCONFIG_URLS", DEFAULT_AUTOCONFIG_URLS)
    for template in urls:
        url = template.format(domain=domain, email=urllib.request.quote(email))
        body = _fetch(url)
        root = _parse(body) if body else None
        if root is None or _local(root.tag) != "clientConfig":
            continue
        servers = []
        for el in root.iter():
            kind = _local(el.tag)
            if kind not in ("incomingServer", "outgoingServer"):
                continue
            protocol = el.get("type", "").lower()
            protection = SOCKET_TYPES.get(_child(el, "socketType"))
            offered = [(x.text or "").strip() for x in el if _local(x.tag) == "authentication"]
            auth = next((AUTHENTICATIONS[a] for a in offered if a in AUTHENTICATIONS), "plain")
            try:
                port = int(_child(el, "port"))
            except ValueError:
                continue
            host = _child(el, "hostname")
            if protocol in ("imap", "pop3", "smtp") and host and protection:
                servers.append(Server(protocol, host, port, protection, auth, _child(el, "username") or "%EMAILADDRESS%"))
        if servers:
            return servers, url.split("?")[0]
    return None


_AUTODISCOVER_REQUEST = (
    '<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns='
    '"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request>'
    "<EMailAddress>{email}</EMailAddress><AcceptableResponseSchema>"
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    "</AcceptableResponseSchema></Request></Autodiscover>"
)


def autodiscover(*, email: str, domain: str) -> tuple[list[Server], str] | None:
    urls = getattr(settings, "TENANTMAIL_AUTODISCOVER_URLS", DEFAULT_AUTODISCOVER_URLS)
    from xml.sax.saxutils import escape

    for template in urls:
        url = template.format(domain=domain, email=urllib.request.quote(email))
        body = _fetch(url, data=_AUTODISCOVER_REQUEST.format(email=escape(email)).encode())
        root = _parse(body) if body else None
        if root is None:
            continue
        servers = []
        for el in root.iter():
            if _local(el.tag) != "Protocol":
                continue
            protocol = _child(el, "Type").lower()
            if protocol not in ("imap", "pop3", "smtp"):
                continue
            try:
                port = int(_child(el, "Port"))
            except ValueError:
                continue
            encryption = _child(el, "Encryption").lower()
            ssl_on = _child(el, "SSL").lower() != "off"
            protection = ("starttls_mandatory" if encryption == "tls" else "ssl_tls" if encryption == "ssl"
                          else ("ssl_tls" if port in (993, 995, 465) else "starttls_mandatory") if ssl_on else "off")
            host = _child(el, "Server")
            if host:
                servers.append(Server(protocol, host, port, protection, "plain",
                                      _child(el, "LoginName") or "%EMAILADDRESS%"))
        if servers:
            return servers, url
    return None


# RFC 6186 (and RFC 8314's _submissions): service -> (protocol, protection), best first.
SRV_SERVICES = (
    ("_imaps._tcp", "imap", "ssl_tls"), ("_imap._tcp", "imap", "starttls_mandatory"),
    ("_pop3s._tcp", "pop3", "ssl_tls"), ("_pop3._tcp", "pop3", "starttls_mandatory"),
    ("_submissions._tcp", "smtp", "ssl_tls"), ("_submission._tcp", "smtp", "starttls_mandatory"),
)


def srv(*, domain: str) -> tuple[list[Server], str] | None:
    try:
        import dns.exception
        import dns.resolver
    except ImportError:  # dnspython is in requirements.txt; without it, no SRV lookups
        return None
    resolver = dns.resolver.Resolver(configure=not conf.TENANTMAIL_DNS_NAMESERVERS)
    nameservers: Iterable[str] | None = conf.TENANTMAIL_DNS_NAMESERVERS
    if nameservers:
        resolver.nameservers = [n.split(":")[0] for n in nameservers]
        resolver.port = int(next(iter(nameservers)).split(":")[1]) if ":" in next(iter(nameservers)) else 53
    resolver.lifetime = _timeout()
    servers = []
    for service, protocol, protection in SRV_SERVICES:
        try:
            answer = resolver.resolve(f"{service}.{domain}", "SRV")
        except (dns.exception.DNSException, OSError):
            continue
        records = sorted(answer, key=lambda r: (r.priority, -r.weight))
        target = str(records[0].target).rstrip(".") if records else ""
        if target:  # "." means: this service is not offered (RFC 6186 section 3.4)
            servers.append(Server(protocol, target, int(records[0].port), protection))
    return (servers, f"DNS SRV records of {domain}") if servers else None
