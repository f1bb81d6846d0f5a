"""The authorization-code flow with PKCE (S256) and `state`, for OAuth2 Authorization Code
artifacts: `start` builds the provider URL (admin button, authorize_credential command);
`complete` takes the callback (code + state), exchanges the code and stores the refresh token.

The callback URL is `/oauth2/callback/` under the app (register it at the provider). The
state is random, single-use and expires after STATE_TTL; the verifier never leaves the server.
"""
from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from ...errors import CredentialError
from ...models import CredentialKind, CredentialStatus, OAuth2Authorization, OAuth2Token, UserCredential
from ..access import tenancy
from . import providers, proxying, tokens
from .errors import OAuth2Error, from_provider

log = logging.getLogger(__name__)

CALLBACK_PATH = "/oauth2/callback/"
STATE_TTL = dt.timedelta(minutes=15)
IN_PROGRESS = "in progress"


def callback_url(base_url: str) -> str:
    """The redirect URI for an app reachable at `base_url` (e.g. https://mail.acme.example)."""
    return base_url.rstrip("/") + CALLBACK_PATH


def find(*, tenant_slug: str, name: str) -> UserCredential:
    cred = UserCredential.objects.filter(tenant__slug=tenant_slug, name=name).first()
    if cred is None:
        raise CredentialError(f"No credential '{name}' in tenant '{tenant_slug}'.")
    return cred


def _artifact(credential_id: int) -> UserCredential:
    try:
        cred = UserCredential.objects.select_related("tenant").get(pk=credential_id)
    except UserCredential.DoesNotExist:
        raise CredentialError(f"No credential artifact with id {credential_id}.") from None
    if cred.kind != CredentialKind.OAUTH2_AUTHORIZATION_CODE:
        raise CredentialError(f"'{cred.name}' is not an OAuth2 Authorization Code artifact: nothing to authorize.")
    if not cred.is_deployed:
        raise CredentialError(f"OAuth2 artifact '{cred.name}' is not deployed yet.",
                              hint="press Deploy first: authorization uses the deployed client id and secret")
    return cred


def _proxies(cred: UserCredential) -> dict | None:
    """Requests of the authorization (no connection of its own): through the proxy only when all
    the artifact's connections share one (proxying.for_credential)."""
    return proxying.requests_proxies(proxying.for_credential(cred))


@sensitive_variables("verifier")
def start(*, credential_id: int, redirect_uri: str, user=None) -> str:
    """Start an authorization; returns the URL to open in a browser."""
    cred = _artifact(credential_id)
    if user is not None:
        tenancy.require(user, cred.tenant_id, action="run")
    settings = dict(cred.deployed_oauth2 or {})
    url = providers.endpoints(settings, proxies=_proxies(cred)).authorization_url
    if not url:
        raise CredentialError(f"OAuth2 artifact '{cred.name}' has no authorization URL.",
                              hint="set authorization_url, or an issuer whose discovery document names one")
    state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    OAuth2Authorization.objects.create(credential=cred, state=state, code_verifier=verifier, redirect_uri=redirect_uri,
                                       started_by=user if user is not None and user.is_authenticated else None)
    extra = {"login_hint": cred.deployed_username}
    if settings.get("provider") == "google":
        extra.update(access_type="offline", prompt="consent")  # else Google sends no refresh token
    client = tokens.session(cred, settings, redirect_uri=redirect_uri, code_challenge_method="S256")
    try:
        authorization_url, _state = client.create_authorization_url(url, state=state, code_verifier=verifier, **extra)
    finally:
        client.close()
    log.info("OAuth2 authorization of credential %r (tenant %s) started", cred.name, cred.tenant_id)
    return authorization_url


@sensitive_variables("code", "data", "pending")
def complete(*, state: str, code: str = "", error: str = "", error_description: str = "") -> UserCredential:
    """The provider's callback. Stores the refresh token (status Authorized) and the first access token."""
    with transaction.atomic():  # single use: taken under a row lock, marked before the exchange
        pending = (OAuth2Authorization.objects.select_for_update().select_related("credential")
                   .filter(state=state or "-", completed_at__isnull=True).first())
        if pending is None or timezone.now() - pending.started_at > STATE_TTL:
            raise CredentialError("This authorization is unknown, used already or expired (state does not match).",
                                  hint="start it again with the Authorize button")
        pending.completed_at, pending.error = timezone.now(), IN_PROGRESS
        pending.save(update_fields=["completed_at", "error"])
    cred = UserCredential.objects.get(pk=pending.credential_id)
    try:
        if error:
            raise from_provider(cred.name, error, error_description)
        data = _exchange(cred, pending, code)
        if not data.get("refresh_token"):
            _granted(cred, data, how="")  # raises: no refresh token
    except OAuth2Error as exc:
        OAuth2Authorization.objects.filter(pk=pending.pk).update(error=exc.message[:2000])
        raise
    OAuth2Authorization.objects.filter(pk=pending.pk).update(error="")
    return _granted(cred, data, how="authorization code")


@sensitive_variables("data")
def _granted(cred: UserCredential, data: dict, *, how: str) -> UserCredential:
    """Keep the new grant (status Authorized) and cache the access token that came with it."""
    if not data.get("refresh_token"):
        raise OAuth2Error(
            f"OAuth2: the provider returned no refresh token for credential '{cred.name}'",
            hint="add the offline_access scope (Microsoft); Google sends one with access_type=offline and prompt=consent",
            error="no_refresh_token")
    UserCredential.objects.filter(pk=cred.pk).update(refresh_token=data["refresh_token"],
                                                     status=CredentialStatus.AUTHORIZED, status_detail="")
    OAuth2Token.objects.get_or_create(credential_id=cred.pk)
    cred.refresh_from_db()
    tokens.store(cred, data, old_refresh_token=data["refresh_token"])
    log.info("OAuth2 credential %r (tenant %s) authorized (%s)", cred.name, cred.tenant_id, how)
    return cred


@sensitive_variables("code", "verifier")
def _exchange(cred: UserCredential, pending: OAuth2Authorization, code: str) -> dict:
    import requests
    from authlib.integrations.base_client import OAuthError

    settings = dict(cred.deployed_oauth2 or {})
    proxies = _proxies(cred)
    url = providers.endpoints(settings, proxies=proxies).token_url
    client = tokens.session(cred, settings, redirect_uri=pending.redirect_uri, proxies=proxies)
    try:
        return dict(client.fetch_token(url, code=code, code_verifier=pending.code_verifier, timeout=tokens.HTTP_TIMEOUT))
    except OAuthError as exc:
        raise from_provider(cred.name, exc.error, exc.description) from None
    except (requests.RequestException, ValueError) as exc:
        raise OAuth2Error(f"OAuth2: the token request for credential '{cred.name}' failed ({type(exc).__name__})",
                          hint="the provider may be down; start the authorization again", transient=True) from None
    finally:
        client.close()


def status(*, state: str) -> tuple[bool, str]:
    """(completed, error) of a started authorization (the command waits on it)."""
    row = OAuth2Authorization.objects.filter(state=state).values_list("completed_at", "error").first()
    if row is None or row[1] == IN_PROGRESS:
        return False, ""
    return row[0] is not None, row[1]


def state_of(url: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    return (parse_qs(urlsplit(url).query).get("state") or [""])[0]


# --- device authorization grant (RFC 8628): no browser and no callback needed ------------------

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True)
class DeviceFlow:
    verification_uri: str
    user_code: str
    device_code: str = field(repr=False)
    interval: int = 5
    expires_in: int = 900
    verification_uri_complete: str = ""


def device_offered(*, credential_id: int) -> bool:
    cred = _artifact(credential_id)
    return bool(providers.endpoints(dict(cred.deployed_oauth2 or {}), proxies=_proxies(cred)).device_url)


def device_start(*, credential_id: int) -> DeviceFlow:
    """Ask the provider for a user code; the user enters it at `verification_uri`."""
    import requests

    cred = _artifact(credential_id)
    settings = dict(cred.deployed_oauth2 or {})
    proxies = _proxies(cred)
    url = providers.endpoints(settings, proxies=proxies).device_url
    if not url:
        raise CredentialError(f"The provider of '{cred.name}' offers no device authorization.",
                              hint="use the callback flow (Authorize button, or authorize_credential without --device)")
    client = tokens.session(cred, settings, proxies=proxies)
    try:
        reply = client.post(url, data={"client_id": settings.get("client_id", ""), "client_secret": cred.deployed_password,
                                       "scope": providers.default_scope(settings)}, timeout=tokens.HTTP_TIMEOUT,
                            withhold_token=True)
        data = reply.json()
    except (requests.RequestException, ValueError) as exc:
        raise OAuth2Error(f"OAuth2: the device authorization request for '{cred.name}' failed ({type(exc).__name__})",
                          transient=True) from None
    finally:
        client.close()
    if "error" in data or "device_code" not in data:
        raise from_provider(cred.name, data.get("error", "invalid_response"), data.get("error_description"))
    return DeviceFlow(data.get("verification_uri") or data.get("verification_url", ""), data["user_code"],
                      data["device_code"], int(data.get("interval") or 5), int(data.get("expires_in") or 900),
                      data.get("verification_uri_complete", ""))


@sensitive_variables("flow", "data")
def device_wait(*, credential_id: int, flow: DeviceFlow, timeout: float | None = None, sleep=time.sleep) -> UserCredential:
    """Poll the token endpoint until the user approved (stores the grant like `complete`)."""
    from authlib.integrations.base_client import OAuthError

    cred = _artifact(credential_id)
    settings = dict(cred.deployed_oauth2 or {})
    proxies = _proxies(cred)
    url = providers.endpoints(settings, proxies=proxies).token_url
    deadline = time.monotonic() + min(timeout or flow.expires_in, flow.expires_in)
    interval = flow.interval
    while True:
        client = tokens.session(cred, settings, proxies=proxies)
        try:
            data = dict(client.fetch_token(url, grant_type=DEVICE_GRANT, device_code=flow.device_code,
                                           timeout=tokens.HTTP_TIMEOUT))
            break
        except OAuthError as exc:
            if exc.error not in ("authorization_pending", "slow_down"):
                raise from_provider(cred.name, exc.error, exc.description) from None
            interval += 5 if exc.error == "slow_down" else 0
        finally:
            client.close()
        if time.monotonic() + interval > deadline:
            raise OAuth2Error(f"OAuth2: the user code of '{cred.name}' was not approved in time",
                              hint="run the command again", error="expired_token")
        sleep(interval)
    return _granted(cred, data, how="device grant")
