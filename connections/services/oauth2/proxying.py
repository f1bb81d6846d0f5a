"""Which proxy an OAuth2 token request goes through, and the requests settings for it.

The rule (docs/oauth2.md, "Proxies"):
- A token request made for a connection (poll, send, IDLE, connectivity test) goes through
  that connection's proxy, the same one its mail traffic uses; discovery of the issuer's
  endpoints too. One artifact may serve several connections with different proxies: each
  request goes through the proxy of the connection that needed the token (the token itself
  is cached per artifact and shared).
- Requests made from the admin or `authorize_credential` (authorization-code exchange, device
  flow, discovery), which belong to no single connection, go through a proxy only when every
  OAuth2 connection of the tenant naming the artifact uses one and the same proxy; otherwise
  (direct connections, different proxies, none at all) they go direct.

Before a proxied request the proxy's addresses are checked against TENANTMAIL_BLOCKED_NETWORKS,
as for mail traffic. SOCKS5 proxies are used as socks5h:// (the proxy resolves the provider's
name), which needs PySocks (requests[socks]).
"""
from __future__ import annotations

import os

from ...mail.proxy import ProxyFailed, ProxySettings, resolve_proxy
from ...models import Authentication, InboundConnection, OutboundConnection, UserCredential
from .errors import OAuth2Error


def for_connection(connection) -> ProxySettings | None:
    """The proxy the connection's token requests go through (its own), None for direct."""
    from ..proxies import proxy_settings_for

    return proxy_settings_for(connection)


def for_credential(cred: UserCredential) -> ProxySettings | None:
    """For requests that belong to no connection: the one proxy all of the artifact's OAuth2
    connections share, else None (direct)."""
    from ..proxies import proxy_settings_for

    found: dict[str, ProxySettings] = {}
    users = 0
    for model in (InboundConnection, OutboundConnection):
        for connection in model.objects.filter(tenant_id=cred.tenant_id, credential_name=cred.name,
                                               authentication=Authentication.OAUTH2):
            users += 1
            proxy = proxy_settings_for(connection)
            if proxy is None:
                return None
            found[proxy.url(with_password=True)] = proxy
    return next(iter(found.values())) if users and len(found) == 1 else None


def requests_proxies(proxy: ProxySettings | None) -> dict | None:
    """The `proxies` mapping for requests, after the blocked-networks check of the proxy.
    None for a direct request. Raises OAuth2Error (transient unless the proxy is blocked)."""
    if proxy is None:
        return None
    from ..setup.connection_settings import blocked_networks

    try:
        resolve_proxy(proxy, blocked_networks=blocked_networks())
    except ProxyFailed as exc:
        raise OAuth2Error(f"OAuth2: the token request cannot use the proxy: {exc.message}", hint=exc.hint,
                          transient=exc.transient) from None
    url = proxy.url(with_password=True)
    return {"http": url, "https": url}


def apply(session, proxies: dict | None) -> None:
    """Make a requests Session use `proxies` and nothing from the environment's *_PROXY /
    NO_PROXY (which would otherwise override it); the CA bundle from the environment stays."""
    if not proxies:
        return
    session.proxies = dict(proxies)
    session.trust_env = False
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle


def hint(proxy: ProxySettings | None, message: str) -> str:
    """The hint for a failed token request: the proxy's when the proxy is the failing side."""
    from ...mail.proxy import HINT_AUTH, HINT_UNREACHABLE

    if proxy is not None and "proxy unreachable" in message:
        return HINT_UNREACHABLE + "; the connection's token requests go through its proxy"
    if proxy is not None and "refused authentication" in message:
        return HINT_AUTH
    return "the provider may be down; it is tried again at the next poll or send"


def failure(proxy: ProxySettings | None, exc: Exception) -> str:
    """A message for a connection error of a proxied token request: which proxy, and whether
    the proxy itself could not be reached. "" for a direct request."""
    if proxy is None:
        return ""
    text = str(exc)
    socks = "SOCKS" in text
    if "Unable to connect to proxy" in text or socks and "[Errno" in text:  # nothing answered at the proxy's port
        return f"OAuth2: cannot reach the {proxy.label} for the token request (proxy unreachable)"
    if "407" in text or "authentication" in text.lower() or "auth" in text.lower() and socks:
        return f"OAuth2: the {proxy.label} refused authentication for the token request"
    return (f"OAuth2: the token request through the {proxy.label} failed (the proxy could not reach the "
            "provider, or broke off)")
