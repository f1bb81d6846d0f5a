"""User Credentials artifacts: user name and password of a mailbox owner."""
from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from fernet_fields import EncryptedTextField

from .tenancy import TenantOwned

credential_name_validator = RegexValidator(
    r"^[A-Za-z0-9._-]+$", "Use letters, digits, '.', '_' and '-' only."
)


class CredentialStatus(models.TextChoices):
    STORED = "stored", "Stored"
    DEPLOYED = "deployed", "Deployed"
    ERROR = "error", "Error"


class UserCredential(TenantOwned):
    name = models.CharField(max_length=150, validators=[credential_name_validator])
    description = models.TextField(blank=True)
    username = models.CharField("user name", max_length=255)
    password = EncryptedTextField()
    status = models.CharField(max_length=16, choices=CredentialStatus.choices, default=CredentialStatus.STORED)
    status_detail = models.TextField(blank=True)
    # What the runtime uses: copied from username/password on deploy.
    deployed_username = models.CharField(max_length=255, blank=True)
    deployed_password = EncryptedTextField(null=True, blank=True)
    deployed_at = models.DateTimeField(null=True, blank=True)
    deployed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    version = models.PositiveIntegerField(default=0, help_text="Deployed version; 0 = never deployed.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "User Credentials artifact"
        verbose_name_plural = "User Credentials artifacts"
        ordering = ["tenant__name", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_credential_tenant_name")]

    def __str__(self) -> str:
        return self.name
