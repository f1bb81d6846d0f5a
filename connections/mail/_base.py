"""What the three clients share: the step trace, opening the socket, error wording, SASL."""
from __future__ import annotations

import base64
import hmac
import socket
import ssl
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from .errors import (
    AuthenticationFailed,
    ConnectError,
    InsecureAuthRefused,
    MailError,
    TLSError,
)
from .settings import MailSettings, default_port
from .targets import refuse_blocked
from .tls import TLSInfo, make_ssl_context, tls_error_from, tls_info_from_socket


# --- step trace (the connectivity test reads it; the clients always fill it) ----------------

@dataclass
class StepRecord:
    name: str
    ok: bool
    duration_ms: float
    detail: dict = field(default_factory=dict)
    message: str = ""
    hint: str = ""
    skipped: bool = False


class Trace:
    """Records each connection step with its duration, success and details."""

    def __init__(self) -> None:
        self.steps: list[StepRecord] = []

    @contextmanager
    def step(self, name: str) -> Iterator[dict]:
        detail: dict = {}
        started = time.perf_counter()
        try:
            yield detail
        except MailError as exc:
            tls_info = getattr(exc, "tls_info", None)
            if tls_info is not None:
                detail.setdefault("certificate", tls_info.to_dict())
            self.steps.append(
                StepRecord(name, False, _ms(started), detail, exc.message, exc.hint)
            )
            raise
        except BaseException as exc:
            self.steps.append(StepRecord(name, False, _ms(started), detail, f"unexpected error: {exc}"))
            raise
        else:
            skipped = detail.pop("_skipped", None)
            if skipped:
                self.steps.append(StepRecord(name, True, _ms(started), detail, skipped, skipped=True))
            else:
                self.steps.append(StepRecord(name, True, _ms(started), detail))

    def skip(self, name: str, message: str, *, hint: str = "", detail: dict | None = None) -> None:
        self.steps.append(StepRecord(name, True, 0.0, detail or {}, message, hint, skipped=True))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 2)


# --- error wording ----------------------------------------------------------------------

class PreconnectedSocket:
    """Mixin for imaplib/poplib clients: use a socket this layer already connected (and
    maybe wrapped in TLS) instead of letting the library open its own."""

    def __init__(self, sock: socket.socket, host: str, port: int, timeout: float) -> None:
        self._ready_sock = sock
        super().__init__(host, port, timeout)  # type: ignore[call-arg]

    def _create_socket(self, timeout):  # the libraries' hook
        sock, self._ready_sock = self._ready_sock, None
        return sock


def where(settings: MailSettings) -> str:
    return f"{settings.host}:{settings.effective_port}"


def upgrade_offered(settings: MailSettings, offered: bool, detail: dict, *, command: str, implicit: str) -> bool:
    """Whether to upgrade with `command` (STARTTLS/STLS). Not offered: an error when STARTTLS
    is mandatory, otherwise the session goes on unencrypted and the step says so."""
    if offered:
        return True
    name = command.split(" ")[0]
    if settings.protection == "starttls_mandatory":
        raise TLSError(
            f"the server at {where(settings)} does not offer {command}",
            hint=f"use protection SSL/TLS on the server's {implicit}, or STARTTLS optional / Off only on a trusted network",
            transient=False,
        )
    detail["_skipped"] = f"the server does not offer {name}: continuing unencrypted (STARTTLS optional)"
    return False


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


def open_socket(settings: MailSettings, trace: Trace) -> tuple[socket.socket, TLSInfo | None]:
    """DNS, TCP and (for protection ssl_tls) the TLS handshake, each traced and timed."""
    host, port = settings.host, settings.effective_port
    if not host:
        raise ConnectError("no host name configured", hint="set the connection's host", step="dns", transient=False)
    if settings.proxy is not None:  # the proxy resolves and connects: one "proxy" step instead of dns + tcp
        return _tls_if_implicit(_open_proxied(settings, trace), settings, trace)
    with trace.step("dns") as detail:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ConnectError(
                f"cannot resolve host name {host!r}: {exc.strerror}",
                hint="check the spelling of the host name and this machine's DNS resolver",
                step="dns",
            ) from None
        except UnicodeError:
            raise ConnectError(f"invalid host name {host!r}", step="dns", transient=False) from None
        detail["host"] = host
        detail["addresses"] = sorted({info[4][0] for info in infos})
    with trace.step("tcp") as detail:
        refuse_blocked(host, port, (info[4][0] for info in infos), settings.blocked_networks)
        sock = None
        last: BaseException | None = None
        for family, type_, proto, _canon, addr in infos:
            candidate = socket.socket(family, type_, proto)
            candidate.settimeout(settings.timeout)
            try:
                candidate.connect(addr)
            except OSError as exc:
                candidate.close()
                last = exc
                continue
            sock = candidate
            detail["address"] = addr[0]
            detail["port"] = port
            break
        if sock is None:
            raise network_error(last or OSError("no address"), settings, step="tcp", doing="connecting")
    return _tls_if_implicit(sock, settings, trace)


def _open_proxied(settings: MailSettings, trace: Trace) -> socket.socket:
    from .proxy import connect_via_proxy

    with trace.step("proxy") as detail:
        return connect_via_proxy(
            settings.proxy, target_host=settings.host, target_port=settings.effective_port,
            timeout=settings.timeout, detail=detail, blocked_networks=settings.blocked_networks,
        )


def _tls_if_implicit(sock: socket.socket, settings: MailSettings, trace: Trace) -> tuple[socket.socket, TLSInfo | None]:
    tls_info = None
    if settings.protection == "ssl_tls":
        with trace.step("tls") as detail:
            detail["mode"] = "implicit TLS"
            tls_sock, tls_info = wrap_tls(sock, settings, starttls=None)
            detail.update(tls_info.to_dict())
            sock = tls_sock
    return sock, tls_info


def wrap_tls(sock: socket.socket, settings: MailSettings, *, starttls: str | None) -> tuple[ssl.SSLSocket, TLSInfo]:
    context = make_ssl_context(settings)
    try:
        tls = context.wrap_socket(sock, server_hostname=settings.tls_hostname)
    except ssl.SSLError as exc:
        sock.close()
        if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            raise TLSError(
                f"the server at {where(settings)} closed the connection during the TLS handshake",
                hint="the port may not speak TLS, or the server refuses TLS 1.2+",
                transient=True,
            ) from None
        raise tls_error_from(exc, settings, starttls=starttls) from None
    except OSError as exc:
        sock.close()
        # Implicit TLS comes before the greeting: the server has not answered yet.
        raise network_error(
            exc, settings, step="tls", doing="negotiating TLS", answered=starttls is not None
        ) from None
    return tls, tls_info_from_socket(tls, verified=settings.verify_certificate)


def after_tls_handshake_error(exc: BaseException, settings: MailSettings, protocol: str) -> MailError:
    """Errors raised by the stdlib's starttls()/stls() wrapping."""
    if isinstance(exc, ssl.SSLCertVerificationError) or (
        isinstance(exc, ssl.SSLError) and not isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError))
    ):
        return tls_error_from(exc, settings, starttls=protocol)
    return network_error(exc, settings, step="tls", doing="negotiating STARTTLS")


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


# --- SASL --------------------------------------------------------------------------------

def sasl_plain(username: str, password: str) -> bytes:
    """RFC 4616 PLAIN message, UTF-8 (the stdlib login() helpers accept ASCII only)."""
    return b"\0" + username.encode("utf-8") + b"\0" + password.encode("utf-8")


def cram_md5_response(username: str, password: str, challenge: bytes) -> bytes:
    """RFC 2195: user SP hex(HMAC-MD5(password, challenge)), UTF-8 bytes (not base64)."""
    digest = hmac.new(password.encode("utf-8"), challenge, "md5").hexdigest()
    return username.encode("utf-8") + b" " + digest.encode("ascii")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode_challenge(text: str | bytes) -> bytes:
    if isinstance(text, str):
        text = text.encode("ascii", "replace")
    try:
        return base64.b64decode(text.strip(), validate=False)
    except (ValueError, TypeError):
        return b""
