"""IMAP4rev1 client: connect, TLS/STARTTLS, LOGIN / AUTHENTICATE PLAIN / CRAM-MD5, folders,
search, fetch (many small mails in one command, or one big mail streamed in partial chunks),
flags, delete, move.

Built on imaplib with a socket we open ourselves (timed DNS/TCP/TLS steps, the connection's
timeout on every socket). Folder names are str in the API and modified UTF-7 on the wire.
"""
from __future__ import annotations

import base64
import imaplib
import re
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable, Iterator

from .errors import ConnectError, ProtocolError, TLSError
from .greeting import unexpected_greeting
from .opener import PreconnectedSocket, SocketOpener
from .sasl import preferred
from .session import MailSession, SaslReply
from .settings import MailSettings
from .trace import Trace
from .wording import (
    after_tls_handshake_error,
    closed_before_greeting,
    closed_during_auth,
    is_timeout,
    network_error,
    not_offered,
    only_after_starttls,
    refuse_plain,
    where,
)

__all__ = ["IMAPClient", "FolderInfo", "Folder", "imap_utf7_encode", "imap_utf7_decode", "uid_sets"]

_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_LIST = re.compile(rb'^\((?P<flags>[^)]*)\) (?P<sep>"(?:\\.|[^"\\])*"|NIL) ?(?P<name>.*)$', re.S)
_STATUS_ITEMS = re.compile(rb"\(([^()]*)\)\s*$")
_CODE = re.compile(rb"^\[([A-Z-]+)")
_SAFE_ATOM = re.compile(r"^[\x21-\x7e]+$")
_MAX_LINE = 64 * 1024 * 1024
_EMPTY_BODY = re.compile(rb'BODY\[[^\]]*\](?:<\d+>)? ""')


@dataclass
class FolderInfo:
    """What SELECT/EXAMINE tells about a folder."""

    name: str
    uidvalidity: int
    exists: int
    uidnext: int | None = None
    readonly: bool = False


@dataclass
class Folder:
    """One LIST entry."""

    name: str
    separator: str | None
    flags: list[str] = field(default_factory=list)

    @property
    def selectable(self) -> bool:
        return not any(f.lower() in ("\\noselect", "\\nonexistent") for f in self.flags)


# --- modified UTF-7 (RFC 3501 5.1.3) ----------------------------------------------------

def imap_utf7_encode(name: str) -> str:
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def imap_utf7_decode(name: str | bytes) -> str:
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")  # UTF8=ACCEPT servers may send raw UTF-8

    def decode(match: re.Match) -> str:
        data = match.group(1)
        if not data:
            return "&"
        data = data.replace(",", "/")
        data += "=" * (-len(data) % 4)
        try:
            return base64.b64decode(data).decode("utf-16-be")
        except (ValueError, UnicodeDecodeError):
            return match.group(0)

    return re.sub(r"&([^-]*)-", decode, name)


def _quote(name: str) -> str:
    """A folder name as an IMAP quoted string, modified UTF-7 encoded."""
    encoded = imap_utf7_encode(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(raw: bytes) -> bytes:
    raw = raw.strip()
    if len(raw) >= 2 and raw[:1] == b'"' and raw[-1:] == b'"':
        return re.sub(rb"\\(.)", rb"\1", raw[1:-1])
    return raw


def uid_sets(uids: Iterable[int], *, max_length: int = 2000) -> Iterator[str]:
    """Compact UID sets ("1:200,205,210:220"), each at most about max_length characters."""
    ordered = sorted(set(int(u) for u in uids))
    parts: list[str] = []
    length = 0
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        part = str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}"
        if parts and length + len(part) + 1 > max_length:
            yield ",".join(parts)
            parts, length = [], 0
        parts.append(part)
        length += len(part) + 1
        i = j + 1
    if parts:
        yield ",".join(parts)


def _text(data) -> str:
    if isinstance(data, (list, tuple)):
        data = data[-1] if data else b""
        if isinstance(data, tuple):
            data = data[0]
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data or "")


class _IMAP4(PreconnectedSocket, imaplib.IMAP4):
    """imaplib.IMAP4 on a socket that is already connected (and maybe TLS-wrapped)."""

    greeting_line: bytes | None = None  # the first line read, for a wrong greeting's error

    def __init__(self, *args) -> None:
        try:
            super().__init__(*args)
        except imaplib.IMAP4.error as exc:
            exc.greeting_line = self.greeting_line or b""  # type: ignore[attr-defined]
            raise

    def readline(self) -> bytes:
        # imaplib caps a response line at 1 MB; UID SEARCH in a mailbox of ~150,000 mails is
        # longer than that. Allow more (a line is still bounded).
        line = self.file.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise self.error(f"got more than {_MAX_LINE} bytes in one response line")
        if self.greeting_line is None:
            self.greeting_line = line
        return line


class IMAPClient(MailSession):
    """Context manager: connect, TLS/STARTTLS, CAPABILITY, authenticate.

    >>> with IMAPClient(settings, password) as imap:
    ...     info = imap.select("INBOX")
    ...     for uid, raw in imap.fetch_many(imap.search_uids(unseen_only=True)): ...
    """

    protocol = "imap"
    implicit_port = "IMAPS port (993)"
    login_commands = frozenset({"LOGIN"})

    def __init__(
        self,
        settings: MailSettings,
        password: str | None,
        *,
        trace: Trace | None = None,
        mechanism: str | None = None,
        opener: SocketOpener | None = None,
    ) -> None:
        """`mechanism` forces one login method ("LOGIN" or "PLAIN" for plain, "CRAM-MD5");
        by default the best the server offers is chosen."""
        super().__init__(settings, password, trace=trace, mechanism=mechanism, opener=opener)
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
            text = _text(exc.args[0] if exc.args else "")
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
        self.greeting = _text(self._imap.welcome)
        detail["text"] = self.greeting

    def _after_greeting(self) -> None:
        self._read_capabilities()

    def _drop(self) -> None:
        self.close(logout=False)

    def close(self, *, logout: bool = True) -> None:
        imap, self._imap = self._imap, None
        if imap is None:
            return
        if logout:
            try:
                imap.logout()
                return
            except (imaplib.IMAP4.error, OSError, EOFError):
                pass
        try:
            imap.shutdown()
        except (OSError, EOFError):
            pass

    def _read_capabilities(self, *, refresh: bool = False) -> None:
        imap = self._imap
        if refresh:
            # The server may announce new capabilities after login; CAPABILITY only if not sent.
            fresh = imap.untagged_responses.pop("CAPABILITY", None)
            if fresh:
                imap.capabilities = tuple(_text(fresh[-1]).upper().split())
            else:
                typ, data = self._call(imap.capability)
                if typ == "OK" and data and data[-1]:
                    imap.capabilities = tuple(_text(data[-1]).upper().split())
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
            raise ConnectError(f"STARTTLS failed: {_text(exc.args[0] if exc.args else '')}", step="tls") from None
        except imaplib.IMAP4.error as exc:
            raise TLSError(
                f"the server refused STARTTLS: {_text(exc.args[0] if exc.args else '')}",
                hint="the server advertises STARTTLS but refused it: check its TLS setup, or use SSL/TLS on port 993",
            ) from None
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

        def step() -> SaslReply:
            if start:
                self._auth_tag = imap._new_tag()
                imap.send(self._auth_tag + b" AUTHENTICATE " + line.encode("ascii") + b"\r\n")
            else:
                imap.send(line.encode("ascii") + b"\r\n")
            while imap.tagged_commands[self._auth_tag] is None:
                if imap._get_response() is None:  # a continuation request
                    return SaslReply(False, challenge=imap.continuation_response)
            return self._auth_reply(*imap._command_complete("AUTHENTICATE", self._auth_tag))

        return self._auth_call(step)

    def _login_command(self, name: str, secret: str) -> SaslReply:
        try:
            return self._auth_call(lambda: self._auth_reply(*self._login(self.settings.username, secret)))
        finally:
            secret = None

    def _auth_call(self, fn) -> SaslReply:
        s = self.settings
        try:
            return fn()
        except imaplib.IMAP4.abort as exc:
            if is_timeout(exc):
                raise network_error(TimeoutError(), s, step="auth", doing="authenticating") from None
            raise closed_during_auth(s) from None
        except imaplib.IMAP4.error as exc:
            return self._auth_reply("NO", [_text(exc.args[0] if exc.args else "").encode()])
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

    # --- commands -------------------------------------------------------------------------

    def _require(self) -> _IMAP4:
        if self._imap is None:
            raise ConnectError("the IMAP session is closed", step="command")
        return self._imap

    def _call(self, fn, *args, doing: str = "", step: str = "command"):
        """Run an imaplib call and map its errors; returns (typ, data)."""
        try:
            return fn(*args)
        except imaplib.IMAP4.abort as exc:
            self.close(logout=False)
            if is_timeout(exc):  # imaplib wraps a timeout while sending a command
                raise network_error(TimeoutError(), self.settings, step=step, doing=doing) from None
            raise ConnectError(
                f"the IMAP session with {where(self.settings)} broke{' while ' + doing if doing else ''}: "
                f"{_text(exc.args[0] if exc.args else '')}",
                step=step,
            ) from None
        except imaplib.IMAP4.error as exc:
            raise ProtocolError(
                f"IMAP {doing or 'command'} failed: {_text(exc.args[0] if exc.args else '')}", step=step,
                transient=False,
            ) from None
        except (OSError, EOFError) as exc:
            self.close(logout=False)
            raise network_error(exc, self.settings, step=step, doing=doing) from None

    def _ok(self, typ: str, data, doing: str) -> None:
        if typ != "OK":
            reply = _text(data)
            raise ProtocolError(
                f"IMAP {doing} failed: {typ} {reply}".strip(), reply=reply,
                transient="[UNAVAILABLE]" in reply or "[INUSE]" in reply or "[LIMIT]" in reply,
            )

    def _uid(self, command: str, *args, doing: str):
        imap = self._require()
        typ, data = self._call(imap.uid, command, *args, doing=doing)
        self._ok(typ, data, doing)
        # Keep imaplib's per-session untagged buffers small in long sessions.
        for key in ("EXPUNGE", "RECENT", "VANISHED"):
            imap.untagged_responses.pop(key, None)
        return data

    def list_folder_details(self, pattern: str = "*") -> list[Folder]:
        imap = self._require()
        typ, data = self._call(imap.list, '""', pattern if pattern == "*" else _quote(pattern), doing="LIST")
        self._ok(typ, data, "LIST")
        folders: list[Folder] = []
        items = list(data)
        i = 0
        while i < len(items):
            item = items[i]
            i += 1
            if item is None:
                continue
            if isinstance(item, tuple):  # name sent as a literal
                head, literal = item
                match = _LIST.match(head.rstrip())
                name_raw = literal
                if i < len(items) and isinstance(items[i], bytes) and not _LIST.match(items[i] or b""):
                    i += 1  # trailing empty part after the literal
            else:
                match = _LIST.match(item)
                name_raw = _unquote(match.group("name")) if match else b""
            if not match:
                continue
            sep_raw = match.group("sep")
            separator = None if sep_raw == b"NIL" else _unquote(sep_raw).decode("utf-8", "replace")
            flags = match.group("flags").decode("ascii", "replace").split()
            folders.append(Folder(imap_utf7_decode(name_raw), separator, flags))
            if separator and self.separator is None:
                self.separator = separator
        return folders

    def list_folders(self) -> list[str]:
        """Every folder's name (decoded from modified UTF-7), in the server's order."""
        return [f.name for f in self.list_folder_details()]

    def select(self, folder: str, *, readonly: bool = False) -> FolderInfo:
        imap = self._require()
        typ, data = self._call(imap.select, _quote(folder), readonly, doing=f"SELECT {folder}")
        if typ != "OK":
            reply = _text(data)
            raise ProtocolError(
                f"cannot open folder {folder!r}: {reply}", reply=reply, transient="[UNAVAILABLE]" in reply,
                hint="check the folder name; the connectivity test lists the server's folders",
            )
        responses = imap.untagged_responses

        def number(key: str) -> int | None:
            values = responses.get(key) or []
            try:
                return int(_text(values[-1]).split()[0])
            except (IndexError, ValueError):
                return None

        self.selected = FolderInfo(
            name=folder, uidvalidity=number("UIDVALIDITY") or 0, exists=number("EXISTS") or 0,
            uidnext=number("UIDNEXT"), readonly=readonly,
        )
        return self.selected

    def status(self, folder: str) -> dict[str, int]:
        """MESSAGES, UNSEEN, UIDVALIDITY, UIDNEXT of a folder (lower-case keys)."""
        imap = self._require()
        typ, data = self._call(imap.status, _quote(folder), "(MESSAGES UNSEEN UIDVALIDITY UIDNEXT)", doing="STATUS")
        self._ok(typ, data, f"STATUS {folder}")
        line = data[-1]
        if isinstance(line, tuple):
            line = line[-1]
        match = _STATUS_ITEMS.search(line or b"")
        tokens = match.group(1).split() if match else []
        return {tokens[i].decode().lower(): int(tokens[i + 1]) for i in range(0, len(tokens) - 1, 2) if tokens[i + 1].isdigit()}

    def search_uids(self, *, unseen_only: bool, min_uid: int | None = None) -> list[int]:
        """UIDs in the selected folder, ascending (optionally only those >= min_uid)."""
        criteria = ["UNSEEN" if unseen_only else "ALL"]
        if min_uid:
            criteria.append(f"UID {int(min_uid)}:*")
        data = self._uid("SEARCH", *criteria, doing="UID SEARCH")
        uids = sorted({int(tok) for line in data if line for tok in line.split() if tok.isdigit()})
        if min_uid:
            uids = [u for u in uids if u >= min_uid]
        return uids

    def fetch_sizes(self, uids: list[int]) -> dict[int, int]:
        """UID -> RFC822.SIZE (absent: the mail is gone)."""
        sizes: dict[int, int] = {}
        for uid_set in uid_sets(uids):
            for line in self._uid("FETCH", uid_set, "(UID RFC822.SIZE)", doing="UID FETCH RFC822.SIZE"):
                head = line[0] if isinstance(line, tuple) else line
                m_uid, m_size = _UID.search(head or b""), _SIZE.search(head or b"")
                if m_uid and m_size:
                    sizes[int(m_uid.group(1))] = int(m_size.group(1))
        return sizes

    def _fetch_literals(self, uid_set: str, item: str, doing: str) -> list[tuple[int, bytes]]:
        data = self._uid("FETCH", uid_set, f"(UID {item})", doing=doing)
        out: list[tuple[int, bytes]] = []
        for i, part in enumerate(data):
            if not isinstance(part, tuple):
                continue
            head, literal = part
            match = _UID.search(head)
            if match is None and i + 1 < len(data) and isinstance(data[i + 1], bytes):
                match = _UID.search(data[i + 1])  # UID after the literal
            if match is not None:
                out.append((int(match.group(1)), literal))
        return out

    def fetch_many(self, uids: list[int], *, batch_size: int = 200) -> Iterator[tuple[int, bytes]]:
        """(UID, raw mail) for small mails, `batch_size` per UID FETCH BODY.PEEK[] command.

        Each batch is read whole into memory: pass big mails to fetch_to() instead.
        Mails deleted meanwhile are simply absent.
        """
        ordered = sorted(set(uids))
        for start in range(0, len(ordered), batch_size):
            for uid_set in uid_sets(ordered[start:start + batch_size]):
                yield from self._fetch_literals(uid_set, "BODY.PEEK[]", "UID FETCH BODY[]")

    def _fetch_one(self, uid: int, item: str, doing: str) -> bytes | None:
        """The literal of one item of one mail; b"" for an empty or NIL value; None when the
        server sent nothing for that UID (the mail is gone)."""
        data = self._uid("FETCH", str(uid), f"(UID {item})", doing=doing)
        answered = False
        for i, part in enumerate(data):
            head = part[0] if isinstance(part, tuple) else part
            match = _UID.search(head or b"")
            if isinstance(part, tuple):
                if match is None and i + 1 < len(data) and isinstance(data[i + 1], bytes):
                    match = _UID.search(data[i + 1])
                if match is not None and int(match.group(1)) == uid:
                    return part[1]
            elif match is not None and int(match.group(1)) == uid and _EMPTY_BODY.search(head):
                # "" is the answer past the end of a mail (RFC 3501 6.4.5); NIL means the server
                # cannot hand it out any more (expunged meanwhile: Dovecot's EXPUNGEISSUED).
                # An unsolicited FLAGS update is no answer at all.
                answered = True
        return b"" if answered else None

    def fetch_to(self, uid: int, sink: BinaryIO, *, size: int | None = None, chunk_size: int = 1 << 20) -> int:
        """Stream one mail into `sink` in BODY.PEEK[]<offset.length> chunks; returns bytes written.

        Memory stays around one chunk whatever the mail's size. `size` (RFC822.SIZE) only saves
        the partial fetch for small mails; the end is where the server sends a short chunk.
        Raises ProtocolError when the mail is gone (also when it vanishes mid-way).
        """
        if size is not None and size <= chunk_size:
            whole = self._fetch_one(uid, "BODY.PEEK[]", "UID FETCH BODY[]")
            if whole is None:
                raise ProtocolError(f"mail UID {uid} is no longer on the server", transient=False)
            sink.write(whole)
            return len(whole)
        offset = 0
        while True:
            chunk = self._fetch_one(uid, f"BODY.PEEK[]<{offset}.{chunk_size}>", "UID FETCH BODY[] (partial)")
            if chunk is None:
                where_ = "" if offset == 0 else f" (it disappeared after {offset} bytes were read)"
                raise ProtocolError(f"mail UID {uid} is no longer on the server{where_}", transient=False)
            if chunk:
                sink.write(chunk)
                offset += len(chunk)
            if len(chunk) < chunk_size:
                return offset

    def fetch_header(self, uid: int) -> bytes:
        header = self._fetch_one(uid, "BODY.PEEK[HEADER]", "UID FETCH BODY[HEADER]")
        if header is None:
            raise ProtocolError(f"mail UID {uid} is no longer on the server", transient=False)
        return header

    def mark_seen(self, uids: list[int]) -> None:
        for uid_set in uid_sets(uids):
            self._uid("STORE", uid_set, "+FLAGS.SILENT", r"(\Seen)", doing="UID STORE \\Seen")

    def delete(self, uids: list[int]) -> None:
        """\\Deleted + UID EXPUNGE (UIDPLUS); without UIDPLUS a plain EXPUNGE, which also removes
        other mails already flagged \\Deleted in the folder."""
        if not uids:
            return
        for uid_set in uid_sets(uids):
            self._uid("STORE", uid_set, "+FLAGS.SILENT", r"(\Deleted)", doing="UID STORE \\Deleted")
        if "UIDPLUS" in self.capabilities:
            for uid_set in uid_sets(uids):
                self._uid("EXPUNGE", uid_set, doing="UID EXPUNGE")
        else:
            imap = self._require()
            typ, data = self._call(imap.expunge, doing="EXPUNGE")
            self._ok(typ, data, "EXPUNGE")
            imap.untagged_responses.pop("EXPUNGE", None)

    def move(self, uids: list[int], folder: str) -> None:
        """UID MOVE (RFC 6851), else UID COPY + delete. Creates the folder if the server says
        TRYCREATE."""
        if not uids:
            return
        command = "MOVE" if "MOVE" in self.capabilities else "COPY"
        for uid_set in uid_sets(uids):
            try:
                self._uid(command, uid_set, _quote(folder), doing=f"UID {command}")
            except ProtocolError as exc:
                if "TRYCREATE" not in exc.reply:
                    raise
                self.create_folder(folder)
                self._uid(command, uid_set, _quote(folder), doing=f"UID {command}")
        if command == "COPY":
            self.delete(uids)

    def create_folder(self, folder: str) -> None:
        """CREATE; no error when the folder exists already."""
        imap = self._require()
        typ, data = self._call(imap.create, _quote(folder), doing="CREATE")
        if typ == "OK":
            return
        reply = _text(data)
        if "ALREADYEXISTS" in reply.upper() or folder in self.list_folders():
            return
        raise ProtocolError(f"cannot create folder {folder!r}: {reply}", reply=reply, transient=False)

    def append(self, folder: str, message: bytes, *, flags: str = "", date_time=None) -> None:
        """APPEND one mail (e.g. a copy of sent mail)."""
        imap = self._require()
        typ, data = self._call(imap.append, _quote(folder), flags or None, date_time, message, doing="APPEND")
        self._ok(typ, data, f"APPEND to {folder}")

    def noop(self) -> None:
        imap = self._require()
        typ, data = self._call(imap.noop, doing="NOOP")
        self._ok(typ, data, "NOOP")

    def unselect(self) -> None:
        """Leave the selected folder without expunging (CLOSE would expunge)."""
        imap = self._require()
        if imap.state != "SELECTED":
            return
        if "UNSELECT" in self.capabilities:
            typ, data = self._call(imap.unselect, doing="UNSELECT")
        else:
            typ, data = self._call(imap.select, _quote(self.selected.name if self.selected else "INBOX"), True, doing="EXAMINE")
        self.selected = None
