"""The plain settings object every client takes (built from a connection by the services)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .proxy import ProxySettings

PROTOCOLS = ("smtp", "imap", "pop3")
PROTECTIONS = ("off", "starttls_mandatory", "starttls_optional", "ssl_tls")
AUTHENTICATIONS = ("none", "plain", "encrypted", "oauth2")
SASL_MECHANISMS = ("", "xoauth2", "oauthbearer")  # "" = what the server offers (OAuth2 only)
# The connection's timeout: 1 s to 5 min (the models validate the same range).
MIN_TIMEOUT, MAX_TIMEOUT = 1.0, 300.0

_DEFAULT_PORTS = {
    ("smtp", "off"): 25,
    ("smtp", "starttls_mandatory"): 587,
    ("smtp", "starttls_optional"): 587,
    ("smtp", "ssl_tls"): 465,
    ("imap", "off"): 143,
    ("imap", "starttls_mandatory"): 143,
    ("imap", "starttls_optional"): 143,
    ("imap", "ssl_tls"): 993,
    ("pop3", "off"): 110,
    ("pop3", "starttls_mandatory"): 110,
    ("pop3", "starttls_optional"): 110,
    ("pop3", "ssl_tls"): 995,
}


def default_port(protocol: str, protection: str) -> int:
    return _DEFAULT_PORTS[(protocol, protection)]


@dataclass(frozen=True)
class MailSettings:
    """Where and how to connect. Holds no secret: the password is passed separately."""

    protocol: str  # smtp | imap | pop3
    host: str
    port: int | None = None  # None: the default for protocol and protection
    protection: str = "ssl_tls"  # off | starttls_mandatory | starttls_optional | ssl_tls
    authentication: str = "plain"  # none | plain | encrypted
    username: str = ""
    timeout: float = 30.0
    verify_certificate: bool = True
    trusted_ca: str = ""  # PEM, trusted in addition to the system store
    allow_plain_without_tls: bool = False
    # For clear error messages only.
    credential_name: str = ""
    credential_version: int | None = None
    # IMAP folder for the connectivity test and polls.
    folder: str = "INBOX"
    # The name the server's certificate must carry, when it differs from `host` (connecting by
    # IP address or through a tunnel). Empty: `host`.
    tls_server_name: str = ""
    # OAuth2 only: force XOAUTH2 or OAUTHBEARER; empty: chosen from what the server offers.
    sasl_mechanism: str = ""
    # Networks no connection may reach (targets.parse_networks of TENANTMAIL_BLOCKED_NETWORKS,
    # passed by the service layer); checked on the resolved addresses before connecting.
    blocked_networks: tuple[Any, ...] = ()
    # Reach the server through this SOCKS5/HTTP proxy (None: directly). Its password is the
    # one secret a MailSettings may carry; it never shows in repr or messages.
    proxy: "ProxySettings | None" = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}")
        if self.protection not in PROTECTIONS:
            raise ValueError(f"unknown protection {self.protection!r}")
        if self.authentication not in AUTHENTICATIONS:
            raise ValueError(f"unknown authentication {self.authentication!r}")
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise ValueError(f"unknown SASL mechanism {self.sasl_mechanism!r}")
        if not isinstance(self.timeout, (int, float)) or not MIN_TIMEOUT <= self.timeout <= MAX_TIMEOUT:
            raise ValueError(
                f"timeout must be from {MIN_TIMEOUT:g} to {MAX_TIMEOUT:g} seconds, not {self.timeout!r}"
            )
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ValueError(f"port must be from 1 to 65535, not {self.port!r}")

    @property
    def effective_port(self) -> int:
        return self.port or default_port(self.protocol, self.protection)

    @property
    def tls_hostname(self) -> str:
        """The name the server's certificate is checked against."""
        return self.tls_server_name or self.host
