"""The one exception root of TenantMail. No Django imports: the mail layer uses it too.

Every error carries a message an operator can act on and, where one helps, a `hint`.
Messages never contain a secret.
"""
from __future__ import annotations


class TenantMailError(Exception):
    """Root of every error TenantMail raises on purpose."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ConfigurationError(TenantMailError):
    """A connection, credential or file is set up wrongly."""


class NotFound(ConfigurationError):
    """No tenant or connection of that name. Management commands exit with status 2 on it."""


def no_tenant(slug: str) -> str:
    """The one wording for an unknown tenant slug, everywhere."""
    return f"No tenant with slug '{slug}'."


class CredentialError(TenantMailError):
    """A User Credentials artifact is missing, undeployed or cannot be decrypted."""


class PermissionDenied(TenantMailError):
    """The user's role in the tenant does not allow this."""


class ValidationError(TenantMailError):
    """Input refused before anything was written or sent."""
