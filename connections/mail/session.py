"""The session base of the IMAP, POP3 and SMTP clients: open socket → greeting → capabilities →
STARTTLS → authentication, each step traced, the same for the three protocols.

Two seams plug in here: the socket opener (opener.py: directly or through a proxy) and the SASL
mechanisms (sasl.py: PLAIN, LOGIN, CRAM-MD5, XOAUTH2, OAUTHBEARER), whose exchange
`_sasl_exchange` runs over any protocol. A client implements only its protocol's hooks: read the
greeting, the capability command, the STARTTLS command, sending one SASL step, and its own
login command (IMAP LOGIN, POP3 USER/PASS and APOP).
"""
from __future__ import annotations

import socket
import ssl
from typing import ClassVar, NamedTuple

from . import sasl
from .errors import MailError, TLSError
from .opener import HeadStart, SocketOpener, open_socket
from .settings import MailSettings
from .tls import TLSInfo, make_ssl_context, tls_info_from_socket
from .trace import Trace
from .wording import refuse_token, temporary_auth_failure, where


class SaslReply(NamedTuple):
    """The server's answer to one authentication step."""

    ok: bool
    text: str = ""  # the reply as shown in messages
    challenge: bytes | str | None = None  # the raw (base64) challenge when the server asks for more
    temporary: bool = False  # a refusal that may pass (the server's backend is unavailable, ...)


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


class MailSession:
    """Context manager: connect, TLS per protection, capabilities, authenticate."""

    protocol: ClassVar[str]
    starttls_mode: ClassVar[str] = "STARTTLS"  # the tls step's "mode"
    starttls_command: ClassVar[str] = "STARTTLS"  # as named in "does not offer ..."
    implicit_port: ClassVar[str]  # e.g. "IMAPS port (993)"
    login_commands: ClassVar[frozenset[str]] = frozenset()  # the protocol's own, not SASL

    def __init__(
        self,
        settings: MailSettings,
        password: str | None,
        *,
        trace: Trace | None = None,
        mechanism: str | None = None,
        opener: SocketOpener | None = None,
        head_start: HeadStart | None = None,
    ) -> None:
        if settings.protocol != self.protocol:
            raise ValueError(f"{type(self).__name__} needs protocol {self.protocol}, not {settings.protocol!r}")
        self.settings = settings
        self._password = password
        self._head_start = head_start  # the socket, already being opened (opener.HeadStart)
        self.trace = trace if trace is not None else (head_start.trace if head_start else Trace())
        self._forced_mechanism = mechanism.upper() if mechanism else None
        self._opener = opener  # None: directly, or through settings.proxy
        self.tls_info: TLSInfo | None = None
        self.encrypted = False
        self.greeting = ""
        self.auth_mechanism = ""
        self._init_state()

    def __enter__(self):
        self.connect()
        return self

    def connect(self) -> None:
        s = self.settings
        if self._head_start is not None:
            head_start, self._head_start = self._head_start, None
            sock, self.tls_info = head_start.take(s)  # its steps are in head_start.trace
        else:
            sock, self.tls_info = open_socket(s, self.trace, self._opener)
        self.encrypted = self.tls_info is not None
        try:
            with self.trace.step("greeting") as detail:
                self._read_greeting(sock, detail)
            self._after_greeting()
            if s.protection in ("starttls_mandatory", "starttls_optional"):
                self._upgrade()
            elif s.protection == "off":
                self.trace.skip("tls", "protection Off: the connection is not encrypted")
            with self.trace.step("capabilities") as detail:
                self._capabilities(detail)
            if self._needs_auth():
                with self.trace.step("auth") as detail:
                    self._authenticate(detail)
        except BaseException:
            self._drop()
            raise

    def _upgrade(self) -> None:
        s = self.settings
        with self.trace.step("tls") as detail:
            detail["mode"] = self.starttls_mode
            self._before_starttls()
            if upgrade_offered(s, self._starttls_offered(), detail, command=self.starttls_command,
                               implicit=self.implicit_port):
                tls_sock = self._start_tls(make_ssl_context(s))
                self.encrypted = True
                self.tls_info = tls_info_from_socket(tls_sock, verified=s.verify_certificate)
                detail.update(self.tls_info.to_dict())
        self._after_starttls()

    # --- authentication -------------------------------------------------------------------

    def _authenticate(self, detail: dict) -> None:
        s = self.settings
        offered = self._offered()
        detail["user"] = s.username
        detail["offered"] = offered
        if s.authentication == "oauth2":
            if not self.encrypted and not s.allow_plain_without_tls:
                raise refuse_token(s, starttls_offered=self._starttls_offered())
            name = sasl.choose_oauth2(s, self._sasl_offered())
        else:
            name = self._choose_password_mechanism(offered)
        detail["mechanism"] = name
        self._log_in(name)
        self.auth_mechanism = name

    def _log_in(self, name: str) -> None:
        """Run the login; neither this frame (tracebacks may show locals) nor the client keeps
        the secret afterwards."""
        mechanism = sasl.mechanism(name)
        secret, self._password = self._password or "", None
        challenge = None
        try:
            if name in self.login_commands:
                reply = self._auth_call(lambda: self._login_command(name, secret))
            else:
                reply, challenge = self._sasl_exchange(mechanism, secret)
        finally:
            secret = None
            self._forget_login()
        if reply.ok:
            self._logged_in(reply)
        elif reply.temporary:
            raise self._temporary_failure(mechanism, reply.text)
        else:
            raise mechanism.failed(self.settings, reply.text, challenge)

    def _sasl_exchange(self, mechanism: sasl.Mechanism, secret: str) -> tuple[SaslReply, bytes | str | None]:
        """AUTH/AUTHENTICATE `mechanism`; returns the final reply and the last challenge answered."""
        s = self.settings
        command, pending, data, answered, step = mechanism.name, None, None, None, 0
        try:
            pending = mechanism.initial(s, secret)
            if pending is not None and self._initial_response_allowed():
                command, pending = f"{command} {sasl.b64(pending)}", None
            reply = self._auth_call(lambda: self._sasl_send(command, start=True))
            while reply.challenge is not None:
                if pending is not None:  # no initial response with the command: the first answer
                    data, pending = pending, None
                else:
                    data = mechanism.respond(s, secret, sasl.b64decode_challenge(reply.challenge), step)
                    answered, step = reply.challenge, step + 1
                if data is None:
                    return self._sasl_cancel(reply), answered
                reply = self._auth_call(lambda: self._sasl_send(sasl.b64(data), start=False))
            return reply, answered
        finally:
            secret = command = pending = data = None

    def _temporary_failure(self, mechanism: sasl.Mechanism, reply: str) -> MailError:
        return temporary_auth_failure(self.settings, reply, hint=mechanism.temporary_hint)

    def _sasl_cancel(self, reply: SaslReply) -> SaslReply:
        """The server asks for more than the mechanism defines: cancel ("*")."""
        return self._auth_call(lambda: self._sasl_send("*", start=False))

    # --- protocol hooks -------------------------------------------------------------------

    def _init_state(self) -> None:
        """The protocol's own attributes (library object, capabilities, ...)."""

    def _read_greeting(self, sock: socket.socket, detail: dict) -> None:
        raise NotImplementedError

    def _after_greeting(self) -> None:
        """E.g. the capabilities the STARTTLS step needs."""

    def _before_starttls(self) -> None:
        """Remember the capabilities before TLS (and read them if not yet done)."""

    def _starttls_offered(self) -> bool:
        raise NotImplementedError

    def _start_tls(self, context: ssl.SSLContext) -> ssl.SSLSocket:
        """Send the STARTTLS command and wrap the socket; returns the TLS socket."""
        raise NotImplementedError

    def _after_starttls(self) -> None:
        """After the tls step (whether upgraded or not)."""

    def _capabilities(self, detail: dict) -> None:
        """The capabilities step: read them if needed and put them into `detail`."""
        raise NotImplementedError

    def _needs_auth(self) -> bool:
        return True

    def _offered(self) -> list[str]:
        """The login methods offered, for the auth step's detail."""
        raise NotImplementedError

    def _sasl_offered(self) -> list[str]:
        return self._offered()

    def _choose_password_mechanism(self, offered: list[str]) -> str:
        raise NotImplementedError

    def _initial_response_allowed(self) -> bool:
        return True

    def _sasl_send(self, line: str, *, start: bool) -> SaslReply:
        """Send one step: the command with `line` (mechanism [initial response]) when `start`,
        else the line alone; read the server's reply."""
        raise NotImplementedError

    def _login_command(self, name: str, secret: str) -> SaslReply:
        raise NotImplementedError

    def _auth_call(self, fn) -> SaslReply:
        """Run one step of the login (`fn`: _sasl_send or _login_command): the library's refusal
        becomes a failed SaslReply, a broken connection a MailError (step auth)."""
        return fn()

    def _logged_in(self, reply: SaslReply) -> None:
        """After a successful login."""

    def _forget_login(self) -> None:
        """Drop anything the protocol library keeps of the login."""

    def _drop(self) -> None:
        """Close without a goodbye (after a failure)."""
        raise NotImplementedError
