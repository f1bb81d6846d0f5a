"""Access tokens for OAuth2 artifacts: cached (encrypted) until shortly before expiry, refreshed
single-flight across threads and processes, retried with backoff on 5xx and timeouts.

Single-flight, and why a lease row (not a row lock or an advisory lock): a row lock
(SELECT ... FOR UPDATE) or a transaction-level advisory lock would have to stay held across the
HTTP call to the provider, i.e. a transaction open across network I/O; a session-level advisory
lock exists on PostgreSQL only. Instead each artifact has one OAuth2Token row with a lease
(`lease_owner`, `lease_until`). A worker takes it with one conditional UPDATE in autocommit
(`lease_until` empty or past): exactly one wins. The winner re-reads the row (someone may have
stored a token meanwhile), asks the provider with no transaction open, stores the token (and a
rotated refresh token) in one short transaction and frees the lease. The others wait, re-reading
the row, until `obtained_at` changes, a still-valid token is there, the winner records an error,
or the lease expires (its holder died) and one of them takes over.

Refresh margin: proportional to the lifetime (a fifth of it, at most 10 minutes), so a
5-minute token is cached for 4 minutes and a 60-minute one for 50.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from ...errors import CredentialError
from ...mail.proxy import ProxySettings
from ...models import CredentialKind, CredentialStatus, OAuth2Token, UserCredential
from . import providers
from . import proxying
from .errors import PERMANENT, OAuth2Error, from_provider

log = logging.getLogger(__name__)

LEASE_SECONDS = 60
WAIT_SECONDS = 75  # a waiter gives up after this (longer than a lease)
ATTEMPTS = 3  # token requests per refresh on 5xx / timeouts / refused connections
BACKOFF = (0.5, 1.5)  # seconds before the 2nd and 3rd attempt
HTTP_TIMEOUT = 15.0
DEFAULT_LIFETIME = 3600  # when the provider sends no expires_in
ERROR_PREFIX = "OAuth2: "


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: dt.datetime
    source: str  # "cache" | "provider"
    requested_ms: float = 0.0  # time spent asking the provider (0 from the cache)

    def __repr__(self) -> str:  # never show the secret
        return f"AccessToken(expires_at={self.expires_at.isoformat()}, source={self.source!r})"


def margin(lifetime: float) -> float:
    """Seconds before expiry at which a token is replaced."""
    return min(600.0, max(0.5, lifetime / 5.0))


def _row(credential_id: int) -> OAuth2Token:
    try:
        return OAuth2Token.objects.get(credential_id=credential_id)
    except OAuth2Token.DoesNotExist:
        try:
            return OAuth2Token.objects.create(credential_id=credential_id)
        except IntegrityError:  # created by another worker meanwhile
            return OAuth2Token.objects.get(credential_id=credential_id)


def _usable(row: OAuth2Token, version: int, now: dt.datetime, *, until: str = "refresh_at") -> bool:
    limit = getattr(row, until)
    return bool(row.access_token and row.credential_version == version and limit and now < limit)


@sensitive_variables("row")
def access_token(*, credential_id: int, proxy: ProxySettings | None = None) -> AccessToken:
    """A valid access token of the deployed OAuth2 artifact. Raises OAuth2Error / CredentialError.
    A token request (when the cache has none) goes through `proxy` (the asking connection's)."""
    cred = UserCredential.objects.get(pk=credential_id)
    if not cred.is_oauth2:
        raise CredentialError(f"Credential '{cred.name}' is not an OAuth2 artifact.")
    if not cred.is_deployed:
        raise CredentialError(f"OAuth2 artifact '{cred.name}' has never been deployed.",
                              hint="press Deploy on its admin page (or apply_config with deploy: true)")
    started = timezone.now()
    deadline = time.monotonic() + WAIT_SECONDS
    pause = 0.02
    while True:
        row = _row(credential_id)
        now = timezone.now()
        if _usable(row, cred.version, now):
            return AccessToken(row.access_token, row.expires_at, "cache")
        owner = uuid.uuid4().hex
        took = OAuth2Token.objects.filter(pk=row.pk).filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now)).update(
            lease_owner=owner, lease_until=now + dt.timedelta(seconds=LEASE_SECONDS))
        if took:
            try:
                row.refresh_from_db()
                cred.refresh_from_db()
                if _usable(row, cred.version, timezone.now()):  # stored while we took the lease
                    return AccessToken(row.access_token, row.expires_at, "cache")
                return _obtain(cred, row, proxy)
            finally:
                OAuth2Token.objects.filter(pk=row.pk, lease_owner=owner).update(lease_owner="", lease_until=None)
        # Another worker refreshes. A token that has not expired yet is still good meanwhile.
        if _usable(row, cred.version, now + dt.timedelta(seconds=1), until="expires_at"):
            return AccessToken(row.access_token, row.expires_at, "cache")
        if row.last_error_at and row.last_error_at >= started and row.last_error:
            raise OAuth2Error(row.last_error, hint="see the credential's status", transient=True)
        if time.monotonic() > deadline:
            raise OAuth2Error(f"OAuth2: waited {WAIT_SECONDS}s for another worker's token request of credential "
                              f"'{cred.name}'", hint="the provider may be slow; it is tried again later", transient=True)
        time.sleep(pause)
        pause = min(pause * 1.5, 0.25)


def forget(*, credential_id: int) -> None:
    """Drop the cached access token (the mail server refused it: revoked before its expiry)."""
    OAuth2Token.objects.filter(credential_id=credential_id).update(access_token=None, refresh_at=None)


# --- talking to the provider (no transaction open) -------------------------------------------

def session(cred: UserCredential, settings: dict, *, proxies: dict | None = None, **kwargs):
    """An Authlib OAuth2Session; with `proxies` (proxying.requests_proxies) through that proxy."""
    from authlib.integrations.requests_client import OAuth2Session

    client = OAuth2Session(
        client_id=settings.get("client_id", ""), client_secret=cred.deployed_password or None,
        scope=providers.default_scope(settings) or None, token_endpoint_auth_method="client_secret_post", **kwargs,
    )
    proxying.apply(client, proxies)
    return client


@sensitive_variables("refresh_token", "client", "proxies")
def request_token(cred: UserCredential, *, refresh_token: str | None = None, proxy: ProxySettings | None = None) -> dict:
    """One token request with retries on 5xx / timeouts / connection errors. Returns the JSON.
    Through `proxy` when given (discovery too)."""
    import requests
    from authlib.integrations.base_client import OAuthError

    settings = dict(cred.deployed_oauth2 or {})
    proxies = proxying.requests_proxies(proxy)
    url = providers.endpoints(settings, proxies=proxies).token_url
    last = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(BACKOFF[min(attempt - 1, len(BACKOFF) - 1)])
        client = session(cred, settings, proxies=proxies)
        try:
            if cred.kind == CredentialKind.OAUTH2_CLIENT_CREDENTIALS:
                return dict(client.fetch_token(url, grant_type="client_credentials", timeout=HTTP_TIMEOUT))
            return dict(client.refresh_token(url, refresh_token=refresh_token, timeout=HTTP_TIMEOUT))
        except OAuthError as exc:
            err = from_provider(cred.name, exc.error, exc.description)
            if not err.transient:
                raise err from None
            last = err.message
        except requests.HTTPError as exc:
            last = f"OAuth2: the provider answered HTTP {exc.response.status_code if exc.response is not None else '?'}"
        except requests.Timeout:
            last = f"OAuth2: the provider did not answer within {HTTP_TIMEOUT:g}s"
        except requests.ConnectionError as exc:
            last = proxying.failure(proxy, exc) or "OAuth2: the provider cannot be reached (connection failed)"
        except ValueError:  # not JSON (an error page)
            last = "OAuth2: the provider's answer is not a token response (not JSON)"
        finally:
            client.close()
    raise OAuth2Error(f"{last} (token URL {url}, {ATTEMPTS} attempts)", hint=proxying.hint(proxy, last),
                      transient=True)


@sensitive_variables("refresh_token", "data", "value")
def _obtain(cred: UserCredential, row: OAuth2Token, proxy: ProxySettings | None = None) -> AccessToken:
    refresh_token = None
    if cred.kind == CredentialKind.OAUTH2_AUTHORIZATION_CODE:
        refresh_token = cred.refresh_token
        if not refresh_token:
            raise OAuth2Error(f"OAuth2 artifact '{cred.name}' is not authorized yet",
                              hint="press Authorize on its admin page, or run manage.py authorize_credential",
                              error="unauthorized")
    started = time.perf_counter()
    try:
        data = request_token(cred, refresh_token=refresh_token, proxy=proxy)
    except OAuth2Error as exc:
        _record_failure(cred, row, exc)
        raise
    requested_ms = round((time.perf_counter() - started) * 1000.0, 2)
    return store(cred, data, requested_ms=requested_ms, old_refresh_token=refresh_token)


@sensitive_variables("data", "value", "new_refresh", "old_refresh_token")
def store(cred: UserCredential, data: dict, *, requested_ms: float = 0.0,
          old_refresh_token: str | None = None) -> AccessToken:
    """Store a token response: the access token in the cache, a rotated refresh token on the artifact."""
    value = data.get("access_token")
    if not value:
        raise OAuth2Error(f"OAuth2: the provider's answer for credential '{cred.name}' has no access_token",
                          transient=True)
    try:
        lifetime = float(data.get("expires_in") or DEFAULT_LIFETIME)
    except (TypeError, ValueError):
        lifetime = DEFAULT_LIFETIME
    now = timezone.now()
    expires_at = now + dt.timedelta(seconds=lifetime)
    refresh_at = expires_at - dt.timedelta(seconds=margin(lifetime))
    new_refresh = data.get("refresh_token")
    with transaction.atomic():
        row = OAuth2Token.objects.select_for_update().get(credential_id=cred.pk)
        row.access_token, row.obtained_at, row.expires_at, row.refresh_at = value, now, expires_at, refresh_at
        row.credential_version, row.requests = cred.version, row.requests + 1
        row.last_error, row.last_error_at = "", None
        row.save(update_fields=["access_token", "obtained_at", "expires_at", "refresh_at", "credential_version",
                                "requests", "last_error", "last_error_at"])
        update: dict = {}
        if cred.kind == CredentialKind.OAUTH2_AUTHORIZATION_CODE and new_refresh and new_refresh != old_refresh_token:
            update["refresh_token"] = new_refresh  # rotated: the old one may stop working now
        current = UserCredential.objects.filter(pk=cred.pk).values_list("status", "status_detail").first()
        if current and current[0] in (CredentialStatus.ERROR, CredentialStatus.UNAUTHORIZED) and (
                current[0] == CredentialStatus.UNAUTHORIZED or current[1].startswith(ERROR_PREFIX)):
            update.update(status=CredentialStatus.AUTHORIZED if cred.kind == CredentialKind.OAUTH2_AUTHORIZATION_CODE
                          else CredentialStatus.DEPLOYED, status_detail="")
        if update:
            UserCredential.objects.filter(pk=cred.pk).update(**update)
    log.info("OAuth2 token for credential %r (tenant %s) obtained, valid %ds", cred.name, cred.tenant_id, int(lifetime))
    return AccessToken(value, expires_at, "provider", requested_ms)


def _record_failure(cred: UserCredential, row: OAuth2Token, exc: OAuth2Error) -> None:
    with transaction.atomic():
        OAuth2Token.objects.filter(pk=row.pk).update(last_error=exc.message[:2000], last_error_at=timezone.now())
        if exc.error in PERMANENT:
            update = {"status": CredentialStatus.ERROR,
                      "status_detail": exc.message + (f" (hint: {exc.hint})" if exc.hint else "")}
            if exc.error == "invalid_grant":
                update["refresh_token"] = None  # dead: the checklist says "Re-authorize"
            UserCredential.objects.filter(pk=cred.pk).update(**update)
    log.warning("OAuth2 token request for credential %r (tenant %s) failed: %s", cred.name, cred.tenant_id, exc.message)




def describe(*, credential_id: int) -> tuple[str, str]:
    """(state, last error) of the artifact's token cache, for pages; never the token."""
    row = OAuth2Token.objects.filter(credential_id=credential_id).first()
    if row is None or row.obtained_at is None:
        return "No token yet: the first poll, send or connectivity test gets one.", row.last_error if row else ""
    valid = row.expires_at and row.expires_at > timezone.now() and row.access_token
    local = timezone.localtime
    return (f"{'Cached, valid' if valid else 'Expired'} until {local(row.expires_at):%Y-%m-%d %H:%M:%S}; "
            f"obtained {local(row.obtained_at):%Y-%m-%d %H:%M:%S}; {row.requests} token requests "
            "(the token itself is never shown).", row.last_error)
