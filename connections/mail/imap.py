"""IMAP4rev1 client: the session (connect, TLS/STARTTLS, CAPABILITY, LOGIN / AUTHENTICATE) as
hooks of the session base; the commands after login are in imap_commands.py.

Built on imaplib with a socket we open ourselves (timed DNS/TCP/TLS steps, the connection's
timeout on every socket). Folder names are str in the API and modified UTF-7 on the wire.
"""
from __future__ import annotations

import imaplib
import random
import re

from .errors import ConnectError
from .greeting import unexpected_greeting
from .imap_codec import reply_text
from .imap_commands import FolderInfo, IMAPCommands
from .opener import PreconnectedSocket
from .sasl import preferred
from .session import MailSession, SaslReply
from .wording import (
    after_tls_handshake_error,
    closed_before_greeting,
    closed_during_auth,
    is_timeout,
    network_error,
    not_offered,
    only_after_starttls,
    refuse_plain,
    starttls_refused,
    where,
)

__all__ = ["IMAPClient", "Goodbye"]

_SAFE_ATOM = re.compile(r"^[\x21-\x7e]+$")
_MAX_LINE = 64 * 1024 * 1024
# imaplib compiles its tagged-reply pattern anew for every session, around a random tag
# prefix: 0.1 ms of CPU per poll. Tags need to be unique only within a session, so one prefix
# per process does, its pattern compiled once.
_TAG_PREFIX = imaplib.Int2AP(random.randint(4096, 65535))
_TAG_RE = re.compile(br"(?P<tag>" + _TAG_PREFIX + br"\d+) (?P<type>[A-Z]+) (?P<data>.*)", re.ASCII)


class _IMAP4(PreconnectedSocket, imaplib.IMAP4):
    """imaplib.IMAP4 on a socket that is already connected (and maybe TLS-wrapped)."""

    greeting_line: bytes | None = None  # the first line read, for a wrong greeting's error

    def __init__(self, *args) -> None:
        try:
            super().__init__(*args)
        except imaplib.IMAP4.error as exc:
            exc.greeting_line = self.greeting_line or b""  # type: ignore[attr-defined]
            raise

    def _connect(self) -> None:
        # imaplib's _connect with the process's tag pattern (above) instead of a new one.
        self.tagpre, self.tagre = _TAG_PREFIX, _TAG_RE
        self._cmd_log_len, self._cmd_log_idx, self._cmd_log = 10, 0, {}  # imaplib's debug ring
        self.welcome = self._get_response()
        if "PREAUTH" in self.untagged_responses:
            self.state = "AUTH"
        elif "OK" in self.untagged_responses:
            self.state = "NONAUTH"
        else:
            raise self.error(self.welcome)
        self._get_capabilities()
        for version in imaplib.AllowedVersions:
            if version in self.capabilities:
                self.PROTOCOL_VERSION = version
                return
        raise self.error("server not IMAP4 compliant")

    _greeting_used = False  # the greeting's capabilities are taken once

    def _get_capabilities(self) -> None:
        # The greeting's [CAPABILITY …] response code (RFC 3501 7.1, RFC 9051 7.1) lists them
        # already: use it instead of a CAPABILITY round trip. Only for the greeting — after
        # STARTTLS imaplib asks again (what was said before TLS is not trusted).
        announced = None if self._greeting_used else self.untagged_responses.pop("CAPABILITY", None)
        self._greeting_used = True
        if announced and announced[-1]:
            self.capabilities = tuple(str(announced[-1], "ascii", "replace").upper().split())
            return
        super()._get_capabilities()

    def readline(self) -> bytes:
        # imaplib caps a response line at 1 MB; UID SEARCH in a mailbox of ~150,000 mails is
        # longer than that. Allow more (a line is still bounded).
        line = self.file.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise self.error(f"got more than {_MAX_LINE} bytes in one response line")
        if self.greeting_line is None:
            self.greeting_line = line
        return line


class IMAPClient(IMAPCommands, MailSession):
    """Context manager: connect, TLS/STARTTLS, CAPABILITY, authenticate.

    `IMAPClient(settings, password, *, trace=None, mechanism=None, opener=None)`: `mechanism`
    forces one login method ("LOGIN" or "PLAIN" for plain, "CRAM-MD5"); by default the best the
    server offers is chosen.

    >>> with IMAPClient(settings, password) as imap:
    ...     info = imap.select("INBOX")
    ...     for uid, raw in imap.fetch_many(imap.search_uids(unseen_only=True)): ...
    """

    protocol = "imap"
    implicit_port = "IMAPS port (993)"
    login_commands = frozenset({"LOGIN"})

    def _init_state(self) -> None:
        self._imap: _IMAP4 | None = None
        self.capabilities: set[str] = set()
        self.capabilities_before_tls: set[str] = set()
        self.separator: str | None = None
        self.selected: FolderInfo | None = None

    # --- session ------------------------------------------------------------------------

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(logout=exc_type is None or not isinstance(exc, ConnectError))

    def _read_greeting(self, sock, detail: dict) -> None:
        s = self.settings
        try:
            self._imap = _IMAP4(sock, s.tls_hostname, s.effective_port, s.timeout)  # host: STARTTLS's name check
        except imaplib.IMAP4.error as exc:
            sock.close()
            text = reply_text(exc.args[0] if exc.args else "")
            if isinstance(exc, imaplib.IMAP4.abort) and "unexpected response" not in text:
                raise closed_before_greeting(s) from None
            if text.startswith("* BYE") or text.startswith("BYE"):
                raise ConnectError(
                    f"the server at {where(s)} refused the connection: {text}",
                    hint="the server may be overloaded or limit connections; try again later",
                    step="greeting",
                ) from None
            raise unexpected_greeting(s, getattr(exc, "greeting_line", b"")) from None
        except (OSError, EOFError) as exc:
            sock.close()
            raise network_error(exc, s, step="greeting", doing="reading the greeting") from None
        self.greeting = reply_text(self._imap.welcome)
        detail["text"] = self.greeting

    def _after_greeting(self) -> None:
        self._read_capabilities()

    def _drop(self) -> None:
        self.close(logout=False)

    def close(self, *, logout: bool = True) -> None:
        imap, self._imap = self._imap, None
        if imap is not None:
            Goodbye(imap, logout=logout).result()

    def begin_logout(self) -> "Goodbye":
        """Send LOGOUT now and read the server's goodbye later (`.result()`), while the caller
        writes its own bookkeeping (a poll its outcome); leaving the `with` block then has
        nothing left to do. Pipelined on the caller's thread: a thread per poll cost more CPU
        than the wait it hid. Errors are ignored, as in close()."""
        imap, self._imap = self._imap, None
        return Goodbye(imap)

    def _read_capabilities(self, *, refresh: bool = False) -> None:
        imap = self._imap
        if refresh:
            # The server may announce new capabilities after login; CAPABILITY only if not sent.
            fresh = imap.untagged_responses.pop("CAPABILITY", None)
            if fresh:
                imap.capabilities = tuple(reply_text(fresh[-1]).upper().split())
            else:
                typ, data = self._call(imap.capability)
                if typ == "OK" and data and data[-1]:
                    imap.capabilities = tuple(reply_text(data[-1]).upper().split())
        self.capabilities = set(imap.capabilities)

    def _before_starttls(self) -> None:
        self.capabilities_before_tls = set(self.capabilities)

    def _starttls_offered(self) -> bool:
        return "STARTTLS" in self.capabilities

    def _start_tls(self, context):
        s = self.settings
        try:
            self._imap.starttls(context)
        except imaplib.IMAP4.abort as exc:
            if is_timeout(exc):
                raise network_error(TimeoutError(), s, step="tls", doing="starting TLS") from None
            raise ConnectError(f"STARTTLS failed: {reply_text(exc.args[0] if exc.args else '')}", step="tls") from None
        except imaplib.IMAP4.error as exc:
            raise starttls_refused(s, "STARTTLS", reply_text(exc.args[0] if exc.args else "")) from None
        except (OSError, EOFError, ValueError) as exc:
            raise after_tls_handshake_error(exc, s, "imap") from None
        self.capabilities = set(self._imap.capabilities)
        return self._imap.sock

    def _capabilities(self, detail: dict) -> None:
        detail["capabilities"] = sorted(self.capabilities)
        if self.capabilities_before_tls:
            detail["capabilities_before_tls"] = sorted(self.capabilities_before_tls)

    def _needs_auth(self) -> bool:
        return self._imap.state == "NONAUTH"

    # --- authentication -------------------------------------------------------------------

    @property
    def auth_mechanisms(self) -> list[str]:
        return sorted(c[5:] for c in self.capabilities if c.startswith("AUTH="))

    def _offered(self) -> list[str]:
        return self.auth_mechanisms

    def _authenticate(self, detail: dict) -> None:
        super()._authenticate(detail)
        before = set(self.capabilities)
        self._read_capabilities(refresh=True)
        if self.capabilities != before:
            detail["capabilities_after_login"] = sorted(self.capabilities)

    def _choose_password_mechanism(self, offered: list[str]) -> str:
        s = self.settings
        if s.authentication == "none":
            raise not_offered("IMAP needs a user name and password", offered,
                              "choose Plain user/password (with TLS) or Encrypted user/password")
        if s.authentication == "encrypted":
            mechanism = preferred("encrypted", offered)
            if mechanism is None:
                names = offered + ([] if "LOGINDISABLED" in self.capabilities else ["LOGIN command"])
                raise not_offered(
                    f"the server does not offer CRAM-MD5 (it offers: {', '.join(names) or 'nothing'})", offered,
                    "choose Plain user/password together with SSL/TLS or STARTTLS mandatory, or enable CRAM-MD5 on the server",
                )
            return mechanism
        if not self.encrypted and not s.allow_plain_without_tls:
            raise refuse_plain(s, starttls_offered="STARTTLS" in self.capabilities, label="password (IMAP LOGIN)")
        if "LOGINDISABLED" in self.capabilities and "PLAIN" not in offered:
            if not self.encrypted and "STARTTLS" in self.capabilities:
                raise only_after_starttls("login only after STARTTLS", offered)
            raise not_offered(f"the server disabled LOGIN (it offers: {', '.join(offered) or 'nothing'})", offered,
                              "choose Encrypted user/password if the server offers CRAM-MD5")
        ascii_safe = all(_SAFE_ATOM.match(v) or v == "" for v in (s.username, self._password or "")) and (
            s.username.isascii() and (self._password or "").isascii()
        )
        if "PLAIN" in offered and "SASL-IR" in self.capabilities:
            mechanism = "PLAIN"  # one round trip, UTF-8 safe
        elif ascii_safe and "LOGINDISABLED" not in self.capabilities:
            mechanism = "LOGIN"
        elif "PLAIN" in offered:
            mechanism = "PLAIN"
        else:
            mechanism = "LOGIN"
        if self._forced_mechanism in ("LOGIN", "PLAIN"):
            mechanism = self._forced_mechanism
            if mechanism == "PLAIN" and "PLAIN" not in offered:
                raise not_offered(
                    f"the server does not offer AUTHENTICATE PLAIN (it offers: {', '.join(offered) or 'nothing'})",
                    offered,
                )
        return mechanism

    def _initial_response_allowed(self) -> bool:
        return "SASL-IR" in self.capabilities

    def _sasl_send(self, line: str, *, start: bool) -> SaslReply:
        imap = self._imap
        if start:
            self._auth_tag = imap._new_tag()
            imap.send(self._auth_tag + b" AUTHENTICATE " + line.encode("ascii") + b"\r\n")
        else:
            imap.send(line.encode("ascii") + b"\r\n")
        while imap.tagged_commands[self._auth_tag] is None:
            if imap._get_response() is None:  # a continuation request
                return SaslReply(False, challenge=imap.continuation_response)
        return self._auth_reply(*imap._command_complete("AUTHENTICATE", self._auth_tag))

    def _login_command(self, name: str, secret: str) -> SaslReply:
        return self._auth_reply(*self._login(self.settings.username, secret))

    def _auth_call(self, fn) -> SaslReply:
        s = self.settings
        try:
            return fn()
        except imaplib.IMAP4.abort as exc:
            if is_timeout(exc):
                raise network_error(TimeoutError(), s, step="auth", doing="authenticating") from None
            raise closed_during_auth(s) from None
        except imaplib.IMAP4.error as exc:
            return self._auth_reply("NO", [reply_text(exc.args[0] if exc.args else "").encode()])
        except (OSError, EOFError) as exc:
            raise network_error(exc, s, step="auth", doing="authenticating") from None

    @staticmethod
    def _auth_reply(typ: str, data: list) -> SaslReply:
        reply = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        return SaslReply(typ == "OK", reply, temporary="[UNAVAILABLE]" in reply)

    def _forget_login(self) -> None:
        if self._imap is not None:
            self._imap._cmd_log = {}  # imaplib keeps the last commands (with the login line) in memory

    def _logged_in(self, reply: SaslReply) -> None:
        imap = self._imap
        imap.state = "AUTH"
        # Servers announce the post-login capabilities in the tagged OK: saves a CAPABILITY.
        match = re.match(r"\[CAPABILITY ([^\]]*)\]", reply.text)
        if match:
            imap.untagged_responses["CAPABILITY"] = [match.group(1).encode()]

    def _login(self, username: str, password: str) -> tuple[str, list]:
        """LOGIN with quoted strings when ASCII, else literals of UTF-8 bytes.

        imaplib can send only one (synchronising) literal per command, so the command is written
        here: non-synchronising literals with LITERAL+, else wait for each continuation.
        """
        imap = self._imap
        literal_plus = "LITERAL+" in self.capabilities

        def quotable(value: str) -> bool:
            return value.isascii() and not any(c in value for c in '"\\\r\n')

        tag = imap._new_tag()
        line = tag + b" LOGIN"
        rejected = False
        for value in (username, password):
            raw = value.encode("utf-8")
            if quotable(value):
                line += b' "' + raw + b'"'
            elif literal_plus:
                line += b" {%d+}\r\n" % len(raw) + raw
            else:
                imap.send(line + b" {%d}\r\n" % len(raw))
                while imap._get_response():  # None means a continuation request
                    if imap.tagged_commands[tag]:
                        rejected = True
                        break
                if rejected:
                    break
                line = raw
        if not rejected:
            imap.send(line + b"\r\n")
        return imap._command_complete("LOGIN", tag)


class Goodbye:
    """A LOGOUT sent (unless `logout` is False), its answer not read yet: `result()` reads it
    and closes the socket."""

    def __init__(self, imap: _IMAP4 | None, *, logout: bool = True) -> None:
        self._imap, self._tag = imap, None
        if imap is not None and logout:
            try:
                imap.state = "LOGOUT"  # as imaplib's logout(): the server's BYE is expected
                self._tag = imap._command("LOGOUT")
            except (imaplib.IMAP4.error, OSError, EOFError):
                pass

    def result(self) -> None:
        imap, self._imap = self._imap, None
        if imap is None:
            return
        if self._tag is not None:
            try:
                imap._command_complete("LOGOUT", self._tag)
            except (imaplib.IMAP4.error, OSError, EOFError):
                pass
        try:
            imap.shutdown()
        except (OSError, EOFError):
            pass
