"""The IMAP commands of IMAPClient once logged in: folders, search, fetch (many small mails in one
command, or one big mail streamed in partial chunks), flags, delete, move, append.

A mixin of imap.IMAPClient: it uses the session's `_imap` (an imaplib.IMAP4), `settings`,
`capabilities` and `close`. No Django.
"""
from __future__ import annotations

import imaplib
import re
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from .errors import ConnectError, ProtocolError
from .imap_codec import imap_utf7_decode, quote_folder, reply_text, uid_sets, unquote
from .wording import is_timeout, network_error, where

__all__ = ["IMAPCommands", "FolderInfo", "Folder"]

_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_LIST = re.compile(rb'^\((?P<flags>[^)]*)\) (?P<sep>"(?:\\.|[^"\\])*"|NIL) ?(?P<name>.*)$', re.S)
_STATUS_ITEMS = re.compile(rb"\(([^()]*)\)\s*$")
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


class IMAPCommands:
    """What a logged-in IMAP session can do."""

    _imap: imaplib.IMAP4 | None
    capabilities: set[str]
    selected: FolderInfo | None
    separator: str | None

    def _require(self) -> imaplib.IMAP4:
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
                f"{reply_text(exc.args[0] if exc.args else '')}",
                step=step,
            ) from None
        except imaplib.IMAP4.error as exc:
            raise ProtocolError(
                f"IMAP {doing or 'command'} failed: {reply_text(exc.args[0] if exc.args else '')}", step=step,
                transient=False,
            ) from None
        except (OSError, EOFError) as exc:
            self.close(logout=False)
            raise network_error(exc, self.settings, step=step, doing=doing) from None

    def _ok(self, typ: str, data, doing: str) -> None:
        if typ != "OK":
            reply = reply_text(data)
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
        typ, data = self._call(imap.list, '""', pattern if pattern == "*" else quote_folder(pattern), doing="LIST")
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
                name_raw = unquote(match.group("name")) if match else b""
            if not match:
                continue
            sep_raw = match.group("sep")
            separator = None if sep_raw == b"NIL" else unquote(sep_raw).decode("utf-8", "replace")
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
        typ, data = self._call(imap.select, quote_folder(folder), readonly, doing=f"SELECT {folder}")
        if typ != "OK":
            reply = reply_text(data)
            raise ProtocolError(
                f"cannot open folder {folder!r}: {reply}", reply=reply, transient="[UNAVAILABLE]" in reply,
                hint="check the folder name; the connectivity test lists the server's folders",
            )
        responses = imap.untagged_responses

        def number(key: str) -> int | None:
            values = responses.get(key) or []
            try:
                return int(reply_text(values[-1]).split()[0])
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
        typ, data = self._call(imap.status, quote_folder(folder), "(MESSAGES UNSEEN UIDVALIDITY UIDNEXT)", doing="STATUS")
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
                self._uid(command, uid_set, quote_folder(folder), doing=f"UID {command}")
            except ProtocolError as exc:
                if "TRYCREATE" not in exc.reply:
                    raise
                self.create_folder(folder)
                self._uid(command, uid_set, quote_folder(folder), doing=f"UID {command}")
        if command == "COPY":
            self.delete(uids)

    def create_folder(self, folder: str) -> None:
        """CREATE; no error when the folder exists already."""
        imap = self._require()
        typ, data = self._call(imap.create, quote_folder(folder), doing="CREATE")
        if typ == "OK":
            return
        reply = reply_text(data)
        if "ALREADYEXISTS" in reply.upper() or folder in self.list_folders():
            return
        raise ProtocolError(f"cannot create folder {folder!r}: {reply}", reply=reply, transient=False)

    def append(self, folder: str, message: bytes, *, flags: str = "", date_time=None) -> None:
        """APPEND one mail (e.g. a copy of sent mail)."""
        imap = self._require()
        typ, data = self._call(imap.append, quote_folder(folder), flags or None, date_time, message, doing="APPEND")
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
            typ, data = self._call(imap.select, quote_folder(self.selected.name if self.selected else "INBOX"), True, doing="EXAMINE")
        self.selected = None
