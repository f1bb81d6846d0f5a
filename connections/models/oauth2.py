"""OAuth2 run-time state of a credential artifact: the cached access token (with the refresh
lease that makes refreshes single-flight) and pending authorizations (state + PKCE verifier).

The artifact itself (client id/secret, provider, refresh token) is a UserCredential of an
OAuth2 kind; the two proxies give each kind its own admin page.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models

from ..fields import EncryptedSecretField
from .credentials import CredentialKind, UserCredential


class OAuth2ClientCredentials(UserCredential):
    class Meta:
        proxy = True
        verbose_name = "OAuth2 Client Credentials artifact"
        verbose_name_plural = "OAuth2 Client Credentials artifacts"

    KIND = CredentialKind.OAUTH2_CLIENT_CREDENTIALS


class OAuth2AuthorizationCode(UserCredential):
    class Meta:
        proxy = True
        verbose_name = "OAuth2 Authorization Code artifact"
        verbose_name_plural = "OAuth2 Authorization Code artifacts"

    KIND = CredentialKind.OAUTH2_AUTHORIZATION_CODE


class OAuth2Token(models.Model):
    """One row per OAuth2 artifact: the cached access token and the refresh lease.

    Single-flight refresh: a worker takes the lease with one conditional UPDATE (autocommit,
    `lease_until` empty or past), asks the provider with no transaction open, stores the new
    token and frees the lease; the others wait for `obtained_at` to change (or the lease to
    expire, when its holder died). Works the same on PostgreSQL and SQLite.
    """

    credential = models.OneToOneField(UserCredential, on_delete=models.CASCADE, related_name="oauth2_token")
    access_token = EncryptedSecretField("access token", null=True, blank=True)
    # For which deployed version: a redeploy (new client secret, scope) invalidates the token.
    credential_version = models.PositiveIntegerField(default=0)
    obtained_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    refresh_at = models.DateTimeField(null=True, blank=True, help_text="When a poll asks for a new token.")
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    requests = models.PositiveIntegerField(default=0, help_text="Token requests made (refreshes included).")
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "OAuth2 token cache"

    def __str__(self) -> str:
        return f"token cache of credential {self.credential_id}"


class OAuth2Authorization(models.Model):
    """An authorization-code flow started (admin button or authorize_credential command)."""

    credential = models.ForeignKey(UserCredential, on_delete=models.CASCADE, related_name="oauth2_authorizations")
    state = models.CharField(max_length=64, unique=True)
    code_verifier = EncryptedSecretField("PKCE code verifier")
    redirect_uri = models.CharField(max_length=500)
    started_at = models.DateTimeField(auto_now_add=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    completed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"authorization of credential {self.credential_id} ({self.started_at:%Y-%m-%d %H:%M})"
