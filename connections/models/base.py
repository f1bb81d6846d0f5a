"""Connection settings shared by inbound and outbound connections (the protocol layer's input)."""
from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from ..validators import normalise_pem, validate_host, validate_pem_certificates
from .credentials import credential_name_validator
from .tenancy import TenantOwned


class Protocol(models.TextChoices):
    SMTP = "smtp", "SMTP"
    IMAP = "imap", "IMAP"
    POP3 = "pop3", "POP3"


class Protection(models.TextChoices):
    OFF = "off", "Off"
    STARTTLS_MANDATORY = "starttls_mandatory", "STARTTLS mandatory"
    STARTTLS_OPTIONAL = "starttls_optional", "STARTTLS optional"
    SSL_TLS = "ssl_tls", "SSL/TLS"


class Authentication(models.TextChoices):
    NONE = "none", "None"
    PLAIN = "plain", "Plain user/password"
    ENCRYPTED = "encrypted", "Encrypted user/password"
    OAUTH2 = "oauth2", "OAuth2 (XOAUTH2 / OAUTHBEARER)"


class SaslMechanism(models.TextChoices):
    AUTO = "", "What the server offers"
    XOAUTH2 = "xoauth2", "XOAUTH2"
    OAUTHBEARER = "oauthbearer", "OAUTHBEARER"


class Readiness(models.TextChoices):
    READY = "ready", "Ready"
    NEEDS_ATTENTION = "attention", "Needs attention"
    BLOCKED = "blocked", "Blocked"


class ConnectionBase(TenantOwned):
    """Abstract: host, protection, authentication and the last connectivity test."""

    name = models.CharField(max_length=150, validators=[credential_name_validator])
    enabled = models.BooleanField(default=True)
    host = models.CharField(
        max_length=255, validators=[validate_host],
        help_text="Host name (international names allowed) or IP address, e.g. mail.example.com.",
    )
    port = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text="Leave empty for the default of the protocol and protection.",
    )
    protection = models.CharField(max_length=24, choices=Protection.choices, default=Protection.SSL_TLS)
    authentication = models.CharField(max_length=16, choices=Authentication.choices, default=Authentication.PLAIN)
    credential_name = models.CharField(
        "Credential Name", max_length=150, blank=True,
        help_text="Name of the credential artifact to use: User Credentials, or an OAuth2 artifact with authentication OAuth2.",
    )
    sasl_mechanism = models.CharField(
        "SASL mechanism", max_length=16, choices=SaslMechanism.choices, blank=True, default="",
        help_text="OAuth2 only: force XOAUTH2 or OAUTHBEARER; empty: chosen from what the server offers.",
    )
    timeout = models.PositiveIntegerField(
        "timeout (seconds)", default=30, validators=[MinValueValidator(1), MaxValueValidator(300)]
    )
    verify_certificate = models.BooleanField("validate server certificate", default=True)
    trusted_ca = models.TextField(
        "trusted CA or certificate (PEM)", blank=True, validators=[validate_pem_certificates],
        help_text="Trusted in addition to the system trust store.",
    )
    allow_plain_without_tls = models.BooleanField(
        "allow plain login without TLS", default=False,
        help_text="Insecure: sends the password readable on the network.",
    )
    # Reach the server through a proxy: a profile of the tenant, or inline (proxy_type set).
    proxy_profile = models.ForeignKey(
        "connections.ProxyProfile", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="A proxy profile of the tenant (SOCKS5 or HTTP CONNECT).",
    )
    proxy_type = models.CharField(
        "inline proxy type", max_length=8, blank=True, choices=[("socks5", "SOCKS5"), ("http", "HTTP CONNECT")],
        help_text="Instead of a profile: a proxy for this connection only (empty: none).",
    )
    proxy_host = models.CharField("inline proxy host", max_length=255, blank=True, validators=[validate_host])
    proxy_port = models.PositiveIntegerField(
        "inline proxy port", null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    proxy_credential_name = models.CharField("inline proxy Credential Name", max_length=150, blank=True)
    # Last connectivity test.
    last_test_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_test_summary = models.TextField(blank=True)
    last_test_report = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        self.trusted_ca = normalise_pem(self.trusted_ca)  # one line end: exported as a YAML block
        super().save(*args, **kwargs)

    def clean(self) -> None:
        super().clean()
        from django.core.exceptions import ValidationError

        errors = {}
        if self.proxy_profile_id and self.tenant_id and self.proxy_profile.tenant_id != self.tenant_id:
            errors["proxy_profile"] = "Choose a proxy profile of the connection's own tenant."
        if self.proxy_type and not (self.proxy_host or "").strip():
            errors["proxy_host"] = "An inline proxy needs a host."
        if self.proxy_type and not self.proxy_port:
            errors["proxy_port"] = "An inline proxy needs a port."
        if errors:
            raise ValidationError(errors)
