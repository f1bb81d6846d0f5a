"""OAuth2 errors: the provider's `error` / `error_description` turned into a message and a hint.

Never carries a token or secret: only the provider's error code, its description (which
providers write for humans) and our own words.
"""
from __future__ import annotations

from ...errors import CredentialError

# error code -> what to do (RFC 6749 §5.2 plus the provider messages seen most).
HINTS = {
    "invalid_grant": "the grant is no longer valid (revoked, expired, password changed or consent withdrawn): "
                     "Re-authorize the credential",
    "invalid_client": "the provider does not accept the client id or client secret: check both (a client secret "
                      "may have expired at the provider), store the new one and deploy",
    "unauthorized_client": "the app registration may not use this grant: enable it at the provider (for Microsoft "
                           "app-only access: application permissions with admin consent)",
    "invalid_scope": "the provider refused the scope: for Microsoft app-only use "
                     "https://outlook.office365.com/.default, for delegated access IMAP.AccessAsUser.All / "
                     "SMTP.Send with offline_access; for Google https://mail.google.com/",
    "consent_required": "an administrator must grant consent for the app's permissions at the provider",
    "interaction_required": "the user must sign in again: Re-authorize the credential",
    "access_denied": "the user or an administrator declined the consent: start the authorization again and approve",
    "unsupported_grant_type": "the provider does not offer this grant for the app",
    "temporarily_unavailable": "the provider is overloaded or down; it is tried again later",
    "server_error": "the provider failed; it is tried again later",
}
# Permanent errors that put the artifact into status Error.
PERMANENT = {"invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope", "consent_required",
             "interaction_required", "unsupported_grant_type"}


class OAuth2Error(CredentialError):
    """Getting a token failed. `error` is the provider's code ("" for network trouble)."""

    def __init__(self, message: str, *, hint: str = "", error: str = "", transient: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.error = error
        self.transient = transient


def from_provider(name: str, error: str, description: str | None) -> OAuth2Error:
    error = (error or "oauth_error")[:100]
    text = " ".join(str(description or "").split())[:300]
    # Microsoft puts AADSTS codes in the description: consent missing is a 65001.
    hint = HINTS.get(error, "")
    if "AADSTS65001" in text:
        hint = HINTS["consent_required"]
    return OAuth2Error(
        f"OAuth2: the provider refused the token request of credential '{name}': {error}"
        + (f" ({text})" if text else ""),
        hint=hint, error=error, transient=error in ("temporarily_unavailable", "server_error"),
    )
