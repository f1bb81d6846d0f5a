"""User Credentials artifacts: user name and password of a mailbox owner.

The password is entered, then *deployed*: the runtime only ever uses the deployed copy
(`deployed_username`, `deployed_password`), so editing an artifact changes nothing until
it is deployed again. Both passwords are Fernet-encrypted at rest (see connections.fields).
"""
from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxLengthValidator, RegexValidator
from django.db import models

from ..errors import CredentialError
from ..fields import EncryptedSecretField
from .tenancy import TenantOwned

credential_name_validator = RegexValidator(
    r"^[A-Za-z0-9._-]+$", "Use letters, digits, '.', '_' and '-' only."
)

PASSWORD_MAX_LENGTH = 255
MASK = "••••••"


class CredentialStatus(models.TextChoices):
    STORED = "stored", "Stored"
    DEPLOYED = "deployed", "Deployed"
    ERROR = "error", "Error"
    # OAuth2 Authorization Code artifacts, once deployed: no grant yet / a refresh token held.
    UNAUTHORIZED = "unauthorized", "Unauthorized"
    AUTHORIZED = "authorized", "Authorized"


class CredentialKind(models.TextChoices):
    USER = "user_credentials", "User Credentials"
    OAUTH2_CLIENT_CREDENTIALS = "oauth2_client_credentials", "OAuth2 Client Credentials"
    OAUTH2_AUTHORIZATION_CODE = "oauth2_authorization_code", "OAuth2 Authorization Code"


OAUTH2_KINDS = (CredentialKind.OAUTH2_CLIENT_CREDENTIALS, CredentialKind.OAUTH2_AUTHORIZATION_CODE)


class UserCredential(TenantOwned):
    name = models.CharField(
        max_length=150, validators=[credential_name_validator],
        help_text="Unique in the tenant; connections refer to it as their Credential Name. "
        "Letters, digits, '.', '_' and '-'.",
    )
    description = models.TextField(blank=True)
    # OAuth2 kinds keep the same lifecycle: `username` is the mailbox user (the SASL identity),
    # `password` the client secret, and `oauth2` the provider settings (see services/oauth2).
    kind = models.CharField(max_length=32, choices=CredentialKind.choices, default=CredentialKind.USER)
    username = models.CharField("user name", max_length=255)
    password = EncryptedSecretField(validators=[MaxLengthValidator(PASSWORD_MAX_LENGTH)])
    status = models.CharField(max_length=16, choices=CredentialStatus.choices, default=CredentialStatus.STORED)
    status_detail = models.TextField(blank=True)
    # What the runtime uses: copied from username/password on deploy.
    deployed_username = models.CharField("deployed user name", max_length=255, blank=True)
    deployed_password = EncryptedSecretField("deployed password", null=True, blank=True)
    deployed_at = models.DateTimeField(null=True, blank=True)
    deployed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    version = models.PositiveIntegerField(default=0, help_text="Deployed version; 0 = never deployed.")
    # OAuth2: token_url, client_id, scope, provider, directory, issuer, authorization_url
    # (no secret); the deployed copy is what the runtime uses.
    oauth2 = models.JSONField("OAuth2 settings", default=dict, blank=True)
    deployed_oauth2 = models.JSONField("deployed OAuth2 settings", default=dict, blank=True)
    # OAuth2 Authorization Code: the grant (write-only, replaced when the provider rotates it).
    refresh_token = EncryptedSecretField("refresh token", null=True, blank=True)
    refresh_token_env = models.CharField(
        "refresh token environment variable", max_length=255, blank=True,
        help_text="Set by apply_config: the variable its file imported the refresh token from.",
    )
    # Configuration as code: the variable the applied file reads the password from, so that
    # export_config writes back the name the operator chose (empty: a name is derived).
    password_env = models.CharField(
        "password environment variable", max_length=255, blank=True,
        help_text="Set by apply_config: the environment variable its file reads the password from.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "User Credentials artifact"
        verbose_name_plural = "User Credentials artifacts"
        ordering = ["tenant__name", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_credential_tenant_name")]

    def __str__(self) -> str:
        return self.name

    # --- state, without ever exposing a secret

    @property
    def is_deployed(self) -> bool:
        return self.version > 0

    @property
    def is_oauth2(self) -> bool:
        return self.kind in OAUTH2_KINDS

    SECRET_FIELDS = ("password", "deployed_password", "refresh_token")  # the encrypted ones

    def decryption_problem(self) -> str | None:
        """Why a stored secret cannot be decrypted with FERNET_KEYS, or None when all can."""
        for field_name in self.SECRET_FIELDS:
            try:
                getattr(self, field_name)
            except CredentialError as exc:
                return exc.message
        return None

    def _raw(self, field_name: str) -> object:
        return self.__dict__.get(field_name)

    @property
    def has_undeployed_changes(self) -> bool:
        """True when the user name or password differs from what the runtime uses.

        Never deployed counts as undeployed. When a password cannot be decrypted the
        answer cannot be known; that state is reported by `decryption_problem` instead,
        and this says False only if the stored ciphertexts are identical.
        """
        if not self.is_deployed:
            return True
        if self.username != self.deployed_username:
            return True
        if (self.oauth2 or {}) != (self.deployed_oauth2 or {}):
            return True
        # Compares plaintexts, or (Undecryptable.__eq__) ciphertexts when a key is missing.
        return self._raw("password") != self._raw("deployed_password")


class CredentialDeployment(models.Model):
    """One deploy of an artifact: which version, when, and by whom.

    Written for every deploy, also those without a user (apply_config run by the system),
    which Django's admin log cannot record (its entries need a user). The admin shows these
    rows on the artifact's page and in its history. Never holds a secret.
    """

    credential = models.ForeignKey(UserCredential, on_delete=models.CASCADE, related_name="deployments")
    version = models.PositiveIntegerField()
    deployed_at = models.DateTimeField()
    deployed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept as text too: the record stays readable after the user is deleted.
    deployed_by_name = models.CharField(max_length=150, blank=True)
    source = models.CharField(max_length=32, blank=True, help_text="admin, apply_config, ...")

    class Meta:
        ordering = ["credential", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["credential", "version"], name="uniq_credential_deployment_version")
        ]

    def __str__(self) -> str:
        return f"{self.credential_id} v{self.version}"

    @property
    def actor(self) -> str:
        who = self.deployed_by_name or "system"
        return f"{who} ({self.source})" if self.source else who
