"""The POP3 commands of POP3Client once logged in: STAT, UIDL, LIST, streaming RETR/TOP, DELE.

poplib's retr() builds a list of every line in memory and refuses lines over 2048 bytes;
`read_multiline` reads the multi-line response itself: dot-unstuffed, line endings kept exactly
as the server sends them, memory bounded. A mixin of pop3.POP3Client (it uses the session's
`_pop`, `settings` and `close`). No Django.
"""
from __future__ import annotations

import io
import poplib
from typing import BinaryIO

from .errors import ConnectError, ProtocolError
from .wording import network_error, where

__all__ = ["POP3Commands", "read_multiline", "reply_text"]

_READ = 65536
_FLUSH = 256 * 1024


def read_multiline(reader, sink: BinaryIO, *, size: int | None = None) -> int:
    """Copy a POP3 multi-line response body (after the status line) from `reader` to `sink`.

    Removes the byte-stuffed leading dot of lines (RFC 1939 3.) and stops at the terminating
    ".CRLF" line; everything else, including bare CR or LF line ends, is kept byte for byte.
    Lines of any length are fine: a long line is read in pieces. Returns the bytes written.

    `size` is the message's size from LIST. A server must end the response with CRLF even when
    the mail does not end with one, so it adds one: when the body is exactly `size` + 2 bytes
    and ends with that CRLF, it is dropped, giving the mail as stored (and as IMAP hands it out).
    """
    written = 0
    pending: list[bytes] = []
    buffered = 0
    at_line_start = True
    readline = reader.readline
    while True:
        line = readline(_READ)
        if not line:
            raise EOFError("connection closed in the middle of a multi-line response")
        if at_line_start and line[:1] == b".":
            if line == b".\r\n" or line == b".\n":
                break
            line = line[1:]
        at_line_start = line[-1:] == b"\n"
        pending.append(line)
        buffered += len(line)
        if buffered >= _FLUSH:
            data = b"".join(pending)
            sink.write(data[:-2])  # keep the last two bytes: they may be the added CRLF
            written += len(data) - 2
            pending, buffered = [data[-2:]], 2
    data = b"".join(pending)
    if size is not None and written + len(data) == size + 2 and data.endswith(b"\r\n"):
        data = data[:-2]
    if data:
        sink.write(data)
        written += len(data)
    return written


def reply_text(value) -> str:
    if isinstance(value, BaseException):
        value = value.args[0] if value.args else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class POP3Commands:
    """What a logged-in POP3 session can do."""

    _pop: poplib.POP3 | None
    _sizes: dict[int, int]

    def _require(self) -> poplib.POP3:
        if self._pop is None:
            raise ConnectError("the POP3 session is closed", step="command")
        return self._pop

    def _call(self, fn, *args, doing: str):
        self._require()
        try:
            return fn(*args)
        except poplib.error_proto as exc:
            reply = reply_text(exc)
            if reply.startswith("-ERR EOF"):
                self.close()
                raise ConnectError(f"the server at {where(self.settings)} closed the connection while {doing}", step="command") from None
            raise ProtocolError(f"POP3 {doing} failed: {reply}", reply=reply, transient=False) from None
        except (OSError, EOFError) as exc:
            self.close()
            raise network_error(exc, self.settings, step="command", doing=doing) from None

    def stat(self) -> tuple[int, int]:
        """(message count, total size in octets)."""
        pop = self._require()
        return self._call(pop.stat, doing="STAT")

    def uidl(self) -> dict[int, str]:
        """Message number -> unique id. Raises ProtocolError when the server has no UIDL."""
        pop = self._require()
        _resp, lines, _octets = self._call(pop.uidl, doing="UIDL")
        out: dict[int, str] = {}
        for line in lines:
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[0].isdigit():
                out[int(parts[0])] = parts[1].strip().decode("utf-8", "replace")
        return out

    def list_sizes(self) -> dict[int, int]:
        """Message number -> size in octets."""
        pop = self._require()
        _resp, lines, _octets = self._call(pop.list, doing="LIST")
        out: dict[int, int] = {}
        for line in lines:
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                out[int(parts[0])] = int(parts[1])
        self._sizes = dict(out)
        return out

    def _multiline(self, command: str, sink: BinaryIO, doing: str, size: int | None = None) -> int:
        pop = self._require()

        def run() -> int:
            pop._putcmd(command)
            pop._getresp()
            return read_multiline(pop.file, sink, size=size)

        return self._call(run, doing=doing)

    def retr_to(self, msgnum: int, sink: BinaryIO, *, size: int | None = None) -> int:
        """RETR streamed into `sink`: dot-unstuffed, line ends as sent. Returns bytes written.

        With the message's LIST size - passed as `size`, or remembered from list_sizes() in
        this session - the CRLF a server must add after a mail that does not end with one is
        dropped, so the bytes equal the stored mail (what IMAP's BODY[] hands out).
        """
        if size is None:
            size = self._sizes.get(int(msgnum))
        return self._multiline(f"RETR {int(msgnum)}", sink, f"RETR {msgnum}", size=size)

    def retr(self, msgnum: int, *, size: int | None = None) -> bytes:
        buffer = io.BytesIO()
        self.retr_to(msgnum, buffer, size=size)
        return buffer.getvalue()

    def top(self, msgnum: int, lines: int = 0) -> bytes:
        """The header and the first `lines` body lines."""
        buffer = io.BytesIO()
        self._multiline(f"TOP {int(msgnum)} {int(lines)}", buffer, f"TOP {msgnum}")
        return buffer.getvalue()

    def dele(self, msgnum: int) -> None:
        """Mark for deletion; applied at QUIT (leaving the context without an error)."""
        pop = self._require()
        self._call(pop.dele, msgnum, doing=f"DELE {msgnum}")

    def rset(self) -> None:
        pop = self._require()
        self._call(pop.rset, doing="RSET")

    def noop(self) -> None:
        pop = self._require()
        self._call(pop.noop, doing="NOOP")
