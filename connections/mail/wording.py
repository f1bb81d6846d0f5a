"""What the clients say when something fails: the errors and hints every session shares.

Network failures are worded by the step they happen in (a timeout before the greeting points at
host, port or firewall; after it, at a slow server). Authentication failures name the user and
the credential, never the secret.
"""
from __future__ import annotations

import socket
import ssl

from .errors import AuthenticationFailed, ConnectError, InsecureAuthRefused, MailError, MechanismUnavailable, TLSError
from .settings import MailSettings, default_port
from .tls import tls_error_from


def where(settings: MailSettings) -> str:
    return f"{settings.host}:{settings.effective_port}"


# --- the network ---------------------------------------------------------------------------

# Until the server has said anything (its greeting), a timeout points at host, port or a
# firewall; after that, the server is reachable and merely too slow.
_STEPS_BEFORE_ANSWER = frozenset({"dns", "tcp", "greeting"})

TIMEOUT_HINT_NO_ANSWER = "check host, port and firewall; raise the connection's timeout if the server is slow"
TIMEOUT_HINT_TOO_SLOW = (
    "the server answered before but is too slow now (overloaded?); it is tried again later — "
    "raise the connection's timeout if this recurs"
)


def is_timeout(exc: BaseException | None) -> bool:
    """A socket timeout, or a library error raised while handling one (smtplib and imaplib wrap
    timeouts in SMTPServerDisconnected / IMAP4.abort): judged by type, never by message text."""
    if exc is None:
        return False
    return isinstance(exc, (socket.timeout, TimeoutError)) or isinstance(exc.__context__, (socket.timeout, TimeoutError))


def network_error(
    exc: BaseException, settings: MailSettings, *, step: str, doing: str = "", answered: bool | None = None
) -> MailError:
    """Map a socket-level exception to a ConnectError (or TLSError) with a hint.

    `answered`: whether the server had already answered in this session (decides a timeout's
    hint); by default, true for every step after the greeting.
    """
    if isinstance(exc, MailError):
        return exc
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return tls_error_from(exc, settings)
    target = where(settings)
    suffix = f" while {doing}" if doing else ""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        if answered is None:
            answered = step not in _STEPS_BEFORE_ANSWER
        return ConnectError(
            f"no answer from {target} within {settings.timeout:g} s{suffix}",
            hint=TIMEOUT_HINT_TOO_SLOW if answered else TIMEOUT_HINT_NO_ANSWER,
            step=step,
        )
    if isinstance(exc, ConnectionRefusedError):
        usual = default_port(settings.protocol, settings.protection)
        return ConnectError(
            f"connection to {target} refused",
            hint=(
                f"check that the server runs and listens on port {settings.effective_port} "
                f"(the usual {settings.protocol.upper()} port for this protection is {usual})"
            ),
            step=step,
        )
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, EOFError, ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return ConnectError(
            f"the server at {target} closed the connection{suffix}",
            hint="the server may be overloaded or refuse this client; try again later",
            step=step,
        )
    if isinstance(exc, OSError):
        return ConnectError(
            f"network error with {target}{suffix}: {exc.strerror or exc}",
            hint="check host, port, routing and firewall",
            step=step,
        )
    return ConnectError(f"connection to {target} failed{suffix}: {exc}", step=step)


def after_tls_handshake_error(exc: BaseException, settings: MailSettings, protocol: str) -> MailError:
    """Errors raised by the stdlib's starttls()/stls() wrapping."""
    if isinstance(exc, ssl.SSLCertVerificationError) or (
        isinstance(exc, ssl.SSLError) and not isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError))
    ):
        return tls_error_from(exc, settings, starttls=protocol)
    return network_error(exc, settings, step="tls", doing="negotiating STARTTLS")


def starttls_refused(settings: MailSettings, command: str, reply: str, *, transient: bool = False) -> TLSError:
    """`command` (STARTTLS, STLS) advertised but refused."""
    return TLSError(
        f"the server refused {command}: {reply}",
        hint=(f"the server advertises {command} but refused it: check its TLS setup, or use SSL/TLS on port "
              f"{default_port(settings.protocol, 'ssl_tls')}"),
        transient=transient,
    )


def closed_before_greeting(settings: MailSettings) -> ConnectError:
    return ConnectError(f"the server at {where(settings)} closed the connection before greeting", step="greeting")


def closed_during_auth(settings: MailSettings) -> ConnectError:
    return ConnectError(f"the server at {where(settings)} closed the connection during authentication", step="auth")


# --- authentication ------------------------------------------------------------------------

def credential_label(settings: MailSettings) -> str:
    label = f"user {settings.username}"
    if settings.credential_name:
        label += f" with credential '{settings.credential_name}'"
        if settings.credential_version is not None:
            label += f" (deployed version {settings.credential_version})"
    return label


def auth_failed(settings: MailSettings, reply: str, *, mechanism: str) -> AuthenticationFailed:
    name = f"credential '{settings.credential_name}'" if settings.credential_name else "the credential"
    return AuthenticationFailed(
        f"authentication failed for {credential_label(settings)} ({mechanism}): {reply.strip()}".rstrip(": "),
        hint=(
            f"check the user name and the password of {name}; if the password changed on the "
            "server, update the credential and deploy it"
        ),
        transient=False,
    )


BACKEND_UNAVAILABLE_HINT = "the server's authentication backend is unavailable; try again later"


def temporary_auth_failure(settings: MailSettings, reply: str, *, hint: str = BACKEND_UNAVAILABLE_HINT) -> MailError:
    return MailError(
        f"temporary authentication failure for user {settings.username}: {reply}",
        hint=hint, step="auth", transient=True,
    )


def refuse_plain(settings: MailSettings, *, starttls_offered: bool, label: str) -> InsecureAuthRefused:
    if starttls_offered:
        hint = "the server offers STARTTLS: set protection to STARTTLS mandatory (or use SSL/TLS)"
    else:
        hint = (
            "use protection SSL/TLS or STARTTLS, or Encrypted user/password (CRAM-MD5); "
            "only on a trusted network, allow plain login without TLS on the connection"
        )
    return InsecureAuthRefused(
        f"refused to send a plain {label} over an unencrypted connection to {where(settings)}; "
        "the password was not sent",
        hint=hint,
        transient=False,
    )


def refuse_token(settings: MailSettings, *, starttls_offered: bool) -> InsecureAuthRefused:
    return InsecureAuthRefused(
        f"refused to send an OAuth2 access token over an unencrypted connection to {where(settings)}; "
        "the token was not sent",
        hint=("the server offers STARTTLS: set protection to STARTTLS mandatory (or use SSL/TLS)"
              if starttls_offered else "use protection SSL/TLS or STARTTLS mandatory"),
        transient=False,
    )


def only_after_starttls(what: str, offered: list[str]) -> MechanismUnavailable:
    """`what`: e.g. "AUTH only after STARTTLS" (POP3 says STLS)."""
    return MechanismUnavailable(
        f"the server offers {what}", hint="set protection to STARTTLS mandatory", offered=offered, transient=False,
    )


def not_offered(message: str, offered: list[str], hint: str = "") -> MechanismUnavailable:
    return MechanismUnavailable(message, hint=hint, offered=offered, transient=False)
