"""From a connection (or a proxy profile) to the protocol layer's `ProxySettings`.

A connection names a proxy profile of its tenant (`proxy_profile`) or carries an inline proxy
(`proxy_type` + `proxy_host` + `proxy_port`, optional `proxy_credential_name`); a profile wins.
The proxy's user name and password come from a deployed User Credentials artifact.

`proxy_url_for` gives the same proxy as a URL (socks5h://… or http://…) for HTTP clients
other than the mail layer, e.g. OAuth2 token requests.
"""
from __future__ import annotations

from ...errors import ConfigurationError
from ...mail.proxy import ProxySettings
from ...models import ProxyProfile
from ..access.lookup import Connection
from ..setup.credentials import resolve_deployed


def _profile_settings(profile: ProxyProfile) -> ProxySettings:
    return _build(
        tenant_id=profile.tenant_id, type=profile.type, host=profile.host, port=profile.port,
        credential_name=profile.credential_name, name=profile.name, where=f"Proxy profile '{profile.name}'",
    )


def _build(*, tenant_id: int, type: str, host: str, port: int | None, credential_name: str, name: str,
           where: str) -> ProxySettings:
    host = (host or "").strip()
    if not host or not port:
        raise ConfigurationError(f"{where} has no proxy host or port.", hint="set the proxy's host and port")
    username = password = ""
    credential_name = (credential_name or "").strip()
    if credential_name:
        credential = resolve_deployed(tenant_id=tenant_id, name=credential_name)
        username, password = credential.username, credential.password
    try:
        return ProxySettings(type=type, host=host, port=int(port), username=username, password=password,
                             name=name, credential_name=credential_name)
    except ValueError as exc:
        raise ConfigurationError(f"{where}: {exc}.", hint="correct the proxy settings") from None


def proxy_settings_for(connection: Connection) -> ProxySettings | None:
    """The proxy the connection goes through, None for a direct connection.

    Raises ConfigurationError (incomplete proxy) or CredentialError (its credential missing or
    never deployed)."""
    if connection.proxy_profile_id:
        profile = ProxyProfile.objects.get(pk=connection.proxy_profile_id)
        if profile.tenant_id != connection.tenant_id:  # never another tenant's proxy (or its credential)
            raise ConfigurationError(f"Connection '{connection.name}' names a proxy profile of another tenant.")
        return _profile_settings(profile)
    if connection.proxy_type:
        return _build(
            tenant_id=connection.tenant_id, type=connection.proxy_type, host=connection.proxy_host,
            port=connection.proxy_port, credential_name=connection.proxy_credential_name, name="",
            where=f"Connection '{connection.name}'",
        )
    return None


def proxy_url_for(connection: Connection, *, with_password: bool = False) -> str | None:
    """The connection's proxy as a URL for other HTTP clients (OAuth2 token requests): e.g.
    ``socks5h://user:pass@proxy:1080`` (the proxy resolves names) or ``http://proxy:3128``.
    None when the connection goes direct. The password only with `with_password`."""
    proxy = proxy_settings_for(connection)
    return proxy.url(with_password=with_password) if proxy is not None else None


def describe_proxy(connection: Connection) -> str:
    """'corp-socks (SOCKS5 proxy.acme.example:1080)', 'HTTP CONNECT 10.0.0.5:3128' or ''."""
    if connection.proxy_profile_id:
        return str(connection.proxy_profile)
    if connection.proxy_type:
        label = "SOCKS5" if connection.proxy_type == "socks5" else "HTTP CONNECT"
        return f"{label} {connection.proxy_host}:{connection.proxy_port}"
    return ""
