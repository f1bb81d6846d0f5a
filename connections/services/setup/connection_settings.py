"""From a connection row to what the protocol layer takes: `MailSettings` + the deployed secret.

Polls, sends and the connectivity test all go through these two functions, so the rules
(defaults, credential resolution, what "authentication none" means) live in one place:

    credential = open_credential(connection)                    # None when authentication is none
    settings = mail_settings_for(connection, credential=credential)
    with IMAPClient(settings, credential.password) as client: ...
"""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from connections.conf import conf

from ...errors import ConfigurationError
from ...mail import MailSettings
from ...mail.targets import parse_networks
from ...models import Authentication, OutboundConnection, Protocol
from ..access.lookup import Connection
from ..proxies import proxy_settings_for
from .credentials import LOOK_UP, DeployedCredential, resolve_deployed

MIN_TIMEOUT, MAX_TIMEOUT = 1, 300


def connection_kind(connection: Connection) -> str:
    """"inbound" or "outbound"."""
    return "outbound" if isinstance(connection, OutboundConnection) else "inbound"


def connection_protocol(connection: Connection) -> str:
    return "smtp" if isinstance(connection, OutboundConnection) else str(connection.protocol)


def open_credential(connection: Connection, *, found: object = LOOK_UP) -> DeployedCredential | None:
    """The deployed user name and password the connection uses; None for authentication None.
    `found`: the UserCredential row its Credential Name names (None: none), when read already.

    Raises ConfigurationError (no Credential Name) or CredentialError (missing, never deployed).
    """
    if connection.authentication == Authentication.NONE:
        return None
    if not (connection.credential_name or "").strip():
        raise ConfigurationError(
            f"Connection '{connection.name}' uses {connection.get_authentication_display()} "
            "but names no User Credentials artifact.",
            hint="set the connection's Credential Name to a deployed User Credentials artifact of this tenant",
        )
    credential = resolve_deployed(tenant_id=connection.tenant_id, name=connection.credential_name.strip(), found=found)
    from ..oauth2.connect import with_access_token  # OAuth2: the "password" is a fresh access token

    return with_access_token(connection, credential)


def blocked_networks() -> tuple:
    """TENANTMAIL_BLOCKED_NETWORKS, parsed (once per value)."""
    return _parsed_networks(conf.TENANTMAIL_BLOCKED_NETWORKS)


@lru_cache(maxsize=8)
def _parsed_networks(value: str) -> tuple:
    try:
        return parse_networks(value)
    except ValueError as exc:
        raise ConfigurationError(str(exc), hint="fix TENANTMAIL_BLOCKED_NETWORKS in the environment") from None


def mail_settings_for(connection: Connection, *, credential: DeployedCredential | None,
                      transport: MailSettings | None = None) -> MailSettings:
    """The protocol layer's settings for the connection (no secret in them); `transport`: its
    transport_settings_for, when the caller has them already.

    Raises ConfigurationError for settings no server can be reached with (no host,
    authentication None on IMAP/POP3, a credential missing where one is needed).
    """
    settings = transport if transport is not None else transport_settings_for(connection)
    if connection.authentication != Authentication.NONE and credential is None:
        raise ConfigurationError(
            f"Connection '{connection.name}' needs its deployed credential.",
            hint="call open_credential(connection) first",
        )
    if credential is None:
        return settings
    return replace(settings, username=credential.username, credential_name=credential.name,
                   credential_version=credential.version)


def transport_settings_for(connection: Connection) -> MailSettings:
    """The settings without the credential: everything the socket and TLS need (a poll opens
    them while it reads the credential: opener.HeadStart). Raises ConfigurationError like
    mail_settings_for."""
    protocol = connection_protocol(connection)
    host = (connection.host or "").strip()
    if not host:
        raise ConfigurationError(
            f"Connection '{connection.name}' has no host.", hint="set the mail server's host name"
        )
    if connection.authentication == Authentication.NONE and protocol != Protocol.SMTP:
        raise ConfigurationError(
            f"Connection '{connection.name}': {protocol.upper()} always needs a user name and password; "
            "authentication None is only for SMTP.",
            hint="choose Encrypted user/password, or Plain user/password together with SSL/TLS",
        )
    timeout = min(max(int(connection.timeout or 30), MIN_TIMEOUT), MAX_TIMEOUT)
    return MailSettings(
        protocol=protocol,
        host=host,
        port=connection.port or None,
        protection=connection.protection,
        authentication=connection.authentication,
        timeout=float(timeout),
        verify_certificate=bool(connection.verify_certificate),
        trusted_ca=connection.trusted_ca or "",
        allow_plain_without_tls=bool(connection.allow_plain_without_tls),
        folder=(getattr(connection, "folder", "") or "INBOX") if protocol == Protocol.IMAP else "INBOX",
        sasl_mechanism=(getattr(connection, "sasl_mechanism", "") or "") if connection.authentication == "oauth2" else "",
        blocked_networks=blocked_networks(),
        proxy=proxy_settings_for(connection),
    )
