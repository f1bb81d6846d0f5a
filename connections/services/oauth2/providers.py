"""Where a provider's endpoints are: Microsoft (per directory), Google, generic URLs, or an
issuer's /.well-known/openid-configuration. Also the rule for token URLs: https, or http only
to a loopback host."""
from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from ...errors import ConfigurationError

PROVIDERS = ("microsoft", "google", "generic")
MICROSOFT = "https://login.microsoftonline.com/{directory}/oauth2/v2.0/"
GOOGLE_AUTHORIZE = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN = "https://oauth2.googleapis.com/token"
GOOGLE_DEVICE = "https://oauth2.googleapis.com/device/code"
DEFAULT_SCOPES = {
    "microsoft": "https://outlook.office365.com/IMAP.AccessAsUser.All https://outlook.office365.com/SMTP.Send offline_access",
    "google": "https://mail.google.com/",
}
# Keys of an artifact's `oauth2` settings (none of them secret).
KEYS = ("token_url", "client_id", "scope", "provider", "directory", "issuer", "authorization_url")
_DISCOVERY: dict[str, tuple[float, dict]] = {}
_DISCOVERY_TTL = 3600.0


@dataclass(frozen=True)
class Endpoints:
    token_url: str
    authorization_url: str = ""
    device_url: str = ""


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost",) or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_problem(url: str, what: str) -> str | None:
    """Why `url` is not usable as an OAuth2 endpoint, or None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{what} is not a URL"
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname:
        if is_loopback(parts.hostname):
            return None
        return f"{what} uses http:// to a host that is not loopback: only https:// is allowed (tokens and secrets cross it)"
    return f"{what} must be an https:// URL"


def settings_problems(kind: str, data: dict) -> list[tuple[str, str]]:
    """[(key, message)] for an artifact's OAuth2 settings of `kind`."""
    out: list[tuple[str, str]] = []
    if not (data.get("client_id") or "").strip():
        out.append(("client_id", "client_id is required"))
    if kind == "oauth2_client_credentials":
        if not data.get("token_url"):
            out.append(("token_url", "token_url is required"))
    else:
        provider = data.get("provider") or ""
        if provider not in PROVIDERS:
            out.append(("provider", f"provider must be one of {', '.join(PROVIDERS)}, not {provider!r}"))
        elif provider == "microsoft" and not (data.get("directory") or "").strip():
            out.append(("directory", "provider microsoft needs directory (the directory/tenant id, or 'organizations')"))
        elif provider == "generic" and not data.get("issuer") and not (data.get("authorization_url") and data.get("token_url")):
            out.append(("issuer", "provider generic needs issuer, or authorization_url and token_url"))
    for key in ("token_url", "authorization_url", "issuer"):
        if data.get(key):
            problem = url_problem(str(data[key]), key)
            if problem:
                out.append((key, problem))
    return out


def _discover(issuer: str, proxies: dict | None = None) -> dict:
    import requests

    cached = _DISCOVERY.get(issuer)
    if cached and time.monotonic() - cached[0] < _DISCOVERY_TTL:
        return cached[1]
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        reply = requests.get(url, timeout=10, proxies=proxies)
        reply.raise_for_status()
        data = reply.json()
    except (requests.RequestException, ValueError) as exc:
        raise ConfigurationError(
            f"OAuth2: could not read the issuer's configuration at {url} ({type(exc).__name__})",
            hint="check the issuer URL; the provider may be down",
        ) from None
    _DISCOVERY[issuer] = (time.monotonic(), data)
    return data


def endpoints(data: dict, *, proxies: dict | None = None) -> Endpoints:
    """The endpoints for an artifact's (deployed) OAuth2 settings; reads discovery when needed
    (through `proxies`, a requests mapping, when given)."""
    provider = data.get("provider") or ""
    if provider == "microsoft":
        base = MICROSOFT.format(directory=(data.get("directory") or "organizations").strip())
        found = Endpoints(data.get("token_url") or base + "token", data.get("authorization_url") or base + "authorize",
                          base + "devicecode")
    elif provider == "google":
        found = Endpoints(data.get("token_url") or GOOGLE_TOKEN, data.get("authorization_url") or GOOGLE_AUTHORIZE,
                          GOOGLE_DEVICE)
    elif data.get("issuer") and not (data.get("token_url") and data.get("authorization_url")):
        meta = _discover(str(data["issuer"]), proxies)
        found = Endpoints(data.get("token_url") or meta.get("token_endpoint", ""),
                          data.get("authorization_url") or meta.get("authorization_endpoint", ""),
                          meta.get("device_authorization_endpoint", ""))
    else:
        found = Endpoints(data.get("token_url") or "", data.get("authorization_url") or "")
    for key in ("token_url", "authorization_url", "device_url"):
        value = getattr(found, key)
        problem = value and url_problem(value, key)
        if problem:
            raise ConfigurationError(f"OAuth2: {problem}", hint="use the provider's https:// endpoint")
    if not found.token_url:
        raise ConfigurationError("OAuth2: no token URL is known for this credential",
                                 hint="set token_url, or an issuer whose discovery document names one")
    return found


def default_scope(data: dict) -> str:
    return (data.get("scope") or "").strip() or DEFAULT_SCOPES.get(data.get("provider") or "", "")
