"""POP3 client: the session (connect, TLS/STLS, CAPA, USER/PASS, AUTH CRAM-MD5 / PLAIN, APOP) as
hooks of the session base; the commands after login are in pop3_commands.py.

Built on poplib with a socket we open ourselves.
"""
from __future__ import annotations

import poplib
import re

from .errors import MailError, ProtocolError
from .greeting import unexpected_greeting
from .opener import PreconnectedSocket
from .pop3_commands import POP3Commands, reply_text
from .sasl import preferred
from .session import MailSession, SaslReply
from .wording import (
    after_tls_handshake_error,
    closed_before_greeting,
    closed_during_auth,
    network_error,
    not_offered,
    only_after_starttls,
    refuse_plain,
    starttls_refused,
)

__all__ = ["POP3Client"]

_TIMESTAMP = re.compile(rb"\+OK.*?(<[^<>]*>)")


class _POP3(PreconnectedSocket, poplib.POP3):
    """poplib.POP3 on a socket that is already connected (and maybe TLS-wrapped)."""


class POP3Client(POP3Commands, MailSession):
    """Context manager: connect, TLS/STLS, CAPA, authenticate. Leaving the block without an
    error sends QUIT, which applies DELEs; leaving it with an error closes the connection
    without QUIT, so the server deletes nothing.

    `POP3Client(settings, password, *, trace=None, mechanism=None, opener=None)`: `mechanism`
    forces one login method ("USER" or "PLAIN" for plain, "CRAM-MD5" or "APOP" for encrypted);
    by default the best the server offers is chosen."""

    protocol = "pop3"
    starttls_mode = "STLS"
    starttls_command = "STLS (STARTTLS for POP3)"
    implicit_port = "POP3S port (995)"
    login_commands = frozenset({"USER", "APOP"})

    def _init_state(self) -> None:
        self._pop: _POP3 | None = None
        self.capabilities: set[str] = set()
        self.capabilities_before_tls: set[str] = set()
        self.sasl_mechanisms: list[str] = []
        self.capa_supported = False
        self.apop_timestamp: bytes | None = None
        self._sizes: dict[int, int] = {}  # from LIST: message numbers are stable in a session

    # --- session ------------------------------------------------------------------------

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.quit()
        else:
            self.close()

    def _read_greeting(self, sock, detail: dict) -> None:
        s = self.settings
        try:
            self._pop = _POP3(sock, s.host, s.effective_port, s.timeout)
        except poplib.error_proto as exc:
            sock.close()
            reply = reply_text(exc)
            if reply.startswith("-ERR EOF"):
                raise closed_before_greeting(s) from None
            raise unexpected_greeting(s, reply) from None
        except (OSError, EOFError) as exc:
            sock.close()
            raise network_error(exc, s, step="greeting", doing="reading the greeting") from None
        self.greeting = reply_text(self._pop.welcome)
        match = _TIMESTAMP.match(self._pop.welcome)
        self.apop_timestamp = match.group(1) if match else None
        detail["text"] = self.greeting
        detail["apop"] = self.apop_timestamp is not None

    def _after_greeting(self) -> None:
        self._read_capabilities()

    def _drop(self) -> None:
        self.close()

    def quit(self) -> None:
        """QUIT: the server applies the DELEs of this session. Raises if it could not."""
        pop = self._pop
        if pop is None:
            return
        try:
            pop.quit()
        except poplib.error_proto as exc:
            self.close()
            raise ProtocolError(
                f"the server reported an error at QUIT (deletions may not have been applied): {reply_text(exc)}",
                transient=True,
            ) from None
        except (OSError, EOFError) as exc:
            self.close()
            raise network_error(exc, self.settings, step="command", doing="sending QUIT") from None
        finally:
            self._pop = None

    def close(self) -> None:
        """Drop the connection without QUIT: the server discards this session's DELEs."""
        pop, self._pop = self._pop, None
        if pop is not None:
            try:
                pop.close()
            except OSError:
                pass

    def _read_capabilities(self) -> None:
        try:
            caps = self._pop.capa()
            self.capa_supported = True
        except poplib.error_proto:
            caps = {}
            self.capa_supported = False
        except UnicodeDecodeError:
            caps = {}
        except (OSError, EOFError) as exc:
            raise network_error(exc, self.settings, step="capabilities", doing="sending CAPA") from None
        self.capabilities = {k.upper() for k in caps}
        self.sasl_mechanisms = [m.upper() for m in caps.get("SASL", [])]

    def _before_starttls(self) -> None:
        self.capabilities_before_tls = set(self.capabilities)

    def _starttls_offered(self) -> bool:
        return "STLS" in self.capabilities

    def _start_tls(self, context):
        s, pop = self.settings, self._pop
        try:
            pop._shortcmd("STLS")
            pop.sock = context.wrap_socket(pop.sock, server_hostname=s.tls_hostname)
            pop.file = pop.sock.makefile("rb")
            pop._tls_established = True
        except poplib.error_proto as exc:
            raise starttls_refused(s, "STLS", reply_text(exc)) from None
        except (OSError, EOFError, ValueError) as exc:
            raise after_tls_handshake_error(exc, s, "pop3") from None
        return pop.sock

    def _after_starttls(self) -> None:
        self._read_capabilities()

    def _capabilities(self, detail: dict) -> None:
        detail["capabilities"] = sorted(self.capabilities)
        detail["sasl"] = list(self.sasl_mechanisms)
        detail["capa_supported"] = self.capa_supported
        if self.capabilities_before_tls:
            detail["capabilities_before_tls"] = sorted(self.capabilities_before_tls)

    # --- authentication -------------------------------------------------------------------

    def _offered(self) -> list[str]:
        offered = list(self.sasl_mechanisms)
        if "USER" in self.capabilities:
            offered.append("USER")
        if self.apop_timestamp:
            offered.append("APOP")
        return offered

    def _sasl_offered(self) -> list[str]:
        return list(self.sasl_mechanisms)

    def _choose_password_mechanism(self, offered: list[str]) -> str:
        s = self.settings
        if s.authentication == "none":
            raise not_offered("POP3 needs a user name and password", offered,
                              "choose Plain user/password (with TLS) or Encrypted user/password")
        if s.authentication == "encrypted":
            sasl_choice = preferred("encrypted", self.sasl_mechanisms)
            if self._forced_mechanism == "APOP" and self.apop_timestamp:
                return "APOP"
            if self._forced_mechanism == "APOP":
                raise not_offered(
                    f"the server's greeting carries no APOP timestamp (it offers: {', '.join(offered) or 'nothing'})",
                    offered,
                )
            if sasl_choice is not None:
                return sasl_choice
            if self.apop_timestamp:
                return "APOP"
            raise not_offered(
                f"the server offers neither CRAM-MD5 nor APOP (it offers: {', '.join(offered) or 'nothing'})", offered,
                "choose Plain user/password together with SSL/TLS or STARTTLS mandatory, or enable CRAM-MD5 on the server",
            )
        if not self.encrypted and not s.allow_plain_without_tls:
            raise refuse_plain(s, starttls_offered="STLS" in self.capabilities, label="password (POP3 USER/PASS)")
        if self._forced_mechanism == "PLAIN" and "PLAIN" in self.sasl_mechanisms:
            return "PLAIN"
        if "USER" in self.capabilities or not self.capa_supported:
            return "USER"
        if "PLAIN" in self.sasl_mechanisms:
            return "PLAIN"
        if not self.encrypted and "STLS" in self.capabilities:
            raise only_after_starttls("USER/PASS only after STLS", offered)
        raise not_offered(
            f"the server offers neither USER/PASS nor SASL PLAIN (it offers: {', '.join(offered) or 'nothing'})",
            offered, "choose Encrypted user/password if the server offers CRAM-MD5 or APOP",
        )

    def _sasl_send(self, line: str, *, start: bool) -> SaslReply:
        pop = self._pop
        pop._putcmd(("AUTH " + line) if start else line)
        reply, _ = pop._getline()
        if reply == b"+" or reply.startswith(b"+ "):  # a challenge, not +OK
            return SaslReply(False, challenge=reply[1:].strip())
        return self._auth_reply(reply)

    def _login_command(self, name: str, secret: str) -> SaslReply:
        s, pop = self.settings, self._pop
        if name == "APOP":
            return self._auth_reply(pop.apop(s.username, secret))
        pop.user(s.username)
        return self._auth_reply(pop.pass_(secret))

    def _auth_call(self, fn) -> SaslReply:
        s = self.settings
        try:
            return fn()
        except poplib.error_proto as exc:  # poplib says "-ERR EOF" when the server hangs up
            reply = reply_text(exc)
            if reply.startswith("-ERR EOF"):
                raise closed_during_auth(s) from None
            return self._auth_reply(reply)
        except (OSError, EOFError) as exc:
            raise network_error(exc, s, step="auth", doing="authenticating") from None

    @staticmethod
    def _auth_reply(line: bytes | str) -> SaslReply:
        reply = reply_text(line)
        return SaslReply(reply.startswith("+OK"), reply, temporary="[SYS/TEMP]" in reply or "[IN-USE]" in reply)

    def _temporary_failure(self, mechanism, reply: str) -> MailError:
        if mechanism.family == "oauth2":
            return super()._temporary_failure(mechanism, reply)
        return MailError(
            f"the server cannot open the mailbox of user {self.settings.username} now: {reply}",
            hint="another client may hold the mailbox lock; try again later",
            step="auth", transient=True,
        )
