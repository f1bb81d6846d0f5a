"""The hook between connections and OAuth2 artifacts: authentication oauth2 takes an OAuth2
artifact, whose "password" for the mail clients is a valid access token."""
from __future__ import annotations

from dataclasses import replace

from django.views.decorators.debug import sensitive_variables

from ...errors import ConfigurationError
from ...models import OAUTH2_KINDS, Authentication
from . import tokens


@sensitive_variables("credential", "token")
def with_access_token(connection, credential):
    """The DeployedCredential to log in with: unchanged for user/password, with the access token
    as password for OAuth2. Raises ConfigurationError when kind and authentication disagree."""
    oauth2 = connection.authentication == Authentication.OAUTH2
    if oauth2 != (credential.kind in OAUTH2_KINDS):
        if oauth2:
            raise ConfigurationError(
                f"Connection '{connection.name}' uses OAuth2 but credential '{credential.name}' is a User Credentials "
                "artifact.", hint="name an OAuth2 artifact, or choose a user/password authentication")
        raise ConfigurationError(
            f"Connection '{connection.name}' uses {connection.get_authentication_display()} but credential "
            f"'{credential.name}' is an OAuth2 artifact.", hint="set the connection's authentication to OAuth2")
    if not oauth2:
        return credential
    from .proxying import for_connection  # token requests go through the connection's proxy

    token = tokens.access_token(credential_id=credential.id, proxy=for_connection(connection))
    return replace(credential, password=token.value, token=token)


def note_failure(connection, exc) -> None:
    """After a failed login with an OAuth2 connection: forget the cached token the server refused
    (revoked before it expired), so the next attempt gets a new one."""
    from ...mail.errors import AuthenticationFailed

    if getattr(connection, "authentication", "") != Authentication.OAUTH2 or not isinstance(exc, AuthenticationFailed):
        return
    from ...models import UserCredential

    pk = UserCredential.objects.filter(tenant_id=connection.tenant_id, name=(connection.credential_name or "").strip(),
                                       kind__in=OAUTH2_KINDS).values_list("pk", flat=True).first()
    if pk is not None:
        tokens.forget(credential_id=pk)


def after_test(connection, steps: list[dict]) -> None:
    """After a failed connectivity test: the server refused the token -> forget it."""
    from ...mail.errors import AuthenticationFailed

    failed = next((s for s in steps if not s.get("ok")), None)
    if failed and failed.get("name") == "auth" and str(failed.get("message", "")).startswith("authentication failed"):
        note_failure(connection, AuthenticationFailed(failed["message"]))


def token_step(*, credential=None, error=None, started: float | None = None) -> dict | None:
    """The connectivity test's "token" step: where the token came from, its expiry and the
    time the provider took; or the provider's error with a hint. None for user/password."""
    import time

    if error is not None:
        return {"name": "token", "ok": False, "skipped": False, "message": error.message, "hint": error.hint,
                "duration_ms": round((time.perf_counter() - (started or time.perf_counter())) * 1000.0, 2),
                "detail": {"error": getattr(error, "error", "")}}
    token = getattr(credential, "token", None)
    if token is None:
        return None
    return {"name": "token", "ok": True, "skipped": False, "hint": "",
            "message": ("access token from the provider" if token.source == "provider" else "cached access token")
            + f", valid until {token.expires_at:%Y-%m-%d %H:%M:%S} UTC",
            "duration_ms": token.requested_ms,
            "detail": {"source": token.source, "expires_at": token.expires_at.isoformat()}}


class login:
    """`with login(connection, IMAPClient, settings, password) as client:` - enters the client;
    for OAuth2, when the server refuses the (cached) token, forgets it and tries once more with a
    new one (a token revoked before its expiry). Anything else is raised as is."""

    def __init__(self, connection, client_class, settings, password, *, head_start=None) -> None:
        self.connection, self.client_class, self.settings = connection, client_class, settings
        self._password = password
        self._head_start = head_start  # the socket already being opened (mail.opener.HeadStart)
        self.client = None

    @sensitive_variables("password", "credential")
    def __enter__(self):
        from ...mail.errors import AuthenticationFailed

        password, self._password = self._password, None
        extra = {"head_start": self._head_start} if self._head_start is not None else {}
        self.client = self.client_class(self.settings, password, **extra)
        try:
            return self.client.__enter__()
        except AuthenticationFailed as exc:
            if self.connection.authentication != Authentication.OAUTH2:
                raise
            note_failure(self.connection, exc)
        from ..setup.connection_settings import open_credential

        credential = open_credential(self.connection)
        self.client = self.client_class(self.settings, credential.password)
        return self.client.__enter__()

    def __exit__(self, exc_type, exc, tb):
        return self.client.__exit__(exc_type, exc, tb)
