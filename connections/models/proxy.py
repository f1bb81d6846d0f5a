"""Proxy profiles: a tenant's SOCKS5 / HTTP CONNECT proxies, used by name from connections."""
from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from ..validators import validate_host
from .credentials import credential_name_validator
from .tenancy import TenantOwned


class ProxyType(models.TextChoices):
    SOCKS5 = "socks5", "SOCKS5"
    HTTP = "http", "HTTP CONNECT"


class ProxyProfile(TenantOwned):
    """A proxy the tenant's connections reach their mail servers through (`proxy: <name>`)."""

    name = models.CharField(max_length=150, validators=[credential_name_validator])
    type = models.CharField(max_length=8, choices=ProxyType.choices, default=ProxyType.SOCKS5)
    host = models.CharField(max_length=255, validators=[validate_host])
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])
    credential_name = models.CharField(
        "Credential Name", max_length=150, blank=True,
        help_text="Optional: a User Credentials artifact with the proxy's user name and password.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant__name", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_proxy_tenant_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_type_display()} {self.host}:{self.port})"
