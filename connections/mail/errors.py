"""Errors of the protocol layer. All subclass `connections.errors.TenantMailError`.

Every error knows the probe step it happened in (`step`) and whether trying again later can
help (`transient`). Messages and hints never contain a secret: they are built from host names,
user names, credential names and the server's replies only.
"""
from __future__ import annotations

from connections.errors import TenantMailError

STEPS = ("proxy", "dns", "tcp", "tls", "greeting", "capabilities", "auth", "command")


class MailError(TenantMailError):
    """Root of the protocol layer's errors."""

    step: str = "command"
    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        hint: str = "",
        step: str | None = None,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        if step is not None:
            self.step = step
        if transient is not None:
            self.transient = transient


class ConnectError(MailError):
    """DNS failure, refused or reset connection, timeout, or a server closing the session.

    `maybe_delivered` is True when an SMTP connection dropped after the message data was
    sent but before the server's final reply: the server may have accepted the message.
    """

    step = "tcp"
    transient = True
    maybe_delivered: bool = False

    def __init__(self, message: str, *, maybe_delivered: bool = False, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.maybe_delivered = maybe_delivered


class TLSError(MailError):
    """TLS handshake or certificate failure, or STARTTLS required but not offered.

    `tls_info` holds the certificate details read for the report (a second handshake
    without verification, only to show the operator what the server presents) when available.
    """

    step = "tls"

    def __init__(self, message: str, *, tls_info=None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.tls_info = tls_info


class InsecureAuthRefused(MailError):
    """Plain user/password over an unencrypted channel, refused before the password is sent."""

    step = "auth"


class MechanismUnavailable(MailError):
    """The server does not offer the authentication mechanism the connection needs."""

    step = "auth"

    def __init__(self, message: str, *, offered: list[str] | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.offered = list(offered or [])


class AuthenticationFailed(MailError):
    """The server rejected the user name / password."""

    step = "auth"


class ProtocolError(MailError):
    """An unexpected or negative reply to a command. `code` is the SMTP reply code if any."""

    def __init__(self, message: str, *, code: int | None = None, reply: str = "", **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.code = code
        self.reply = reply


class SMTPReplyError(ProtocolError):
    """An SMTP reply that refused the transaction. Transient for 4xx codes.

    `refused` holds the per-recipient refusals when every recipient was refused.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int,
        reply: str = "",
        refused: dict[str, tuple[int, str]] | None = None,
        **kwargs,
    ) -> None:
        kwargs.setdefault("transient", 400 <= code < 500)
        super().__init__(message, code=code, reply=reply, **kwargs)
        self.refused = dict(refused or {})
