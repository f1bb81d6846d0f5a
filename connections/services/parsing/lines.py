"""Where the splitter reads a mail from — a file, or bytes / a memoryview held in memory —
and the line reader that cuts it into lines as the email package's feedparser does."""
from __future__ import annotations

import os
import re
from typing import BinaryIO, Iterator

CHUNK = 1 << 20  # a file (or a memoryview) is read this much at a time
LONG_LINE = 8 << 20
LINE_RE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)?")


class Source:
    """The bytes of a mail, read by ranges."""

    size: int

    def read(self, start: int, end: int) -> bytes:
        raise NotImplementedError

    def fill_size(self) -> int:
        """How much the line reader reads at a time."""
        return CHUNK

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        pos = start
        while pos < end:
            chunk = self.read(pos, min(pos + CHUNK, end))
            if not chunk:
                return
            pos += len(chunk)
            yield chunk

    def buffer(self) -> bytes | None:
        """The whole mail as bytes when it is held so (a range decoded without a copy)."""
        return None


class FileSource(Source):
    """A mail in a file, read in chunks (never held whole)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.size = os.fstat(fh.fileno()).st_size

    def read(self, start: int, end: int) -> bytes:
        self.fh.seek(start)
        return self.fh.read(end - start)


class MemorySource(Source):
    """A mail held in memory: bytes (read in one piece, without a copy) or a memoryview
    (copied a chunk at a time, as a file is read)."""

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data
        self.size = len(data)

    def read(self, start: int, end: int) -> bytes:
        piece = self.data[start:end]
        return piece if isinstance(piece, bytes) else bytes(piece)

    def fill_size(self) -> int:
        return self.size if isinstance(self.data, bytes) else CHUNK

    def buffer(self) -> bytes | None:
        return self.data if isinstance(self.data, bytes) else None


def eol_len(line: bytes) -> int:
    if line.endswith(b"\r\n"):
        return 2
    return 1 if line.endswith((b"\n", b"\r")) else 0


class LineReader:
    """Lines as the email package's feedparser cuts them (CRLF, CR or LF), with file offsets,
    one-line pushback and the feedparser's stack of "false EOF" boundary matchers."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.offset = 0  # where the next read starts
        self.buf = b""
        self.pos = 0
        self.base = 0
        self.eof = False
        self.pushed: list[tuple[int, bytes]] = []
        self.at_boundary = False
        self.nul = False
        self.long_line = False
        self.last_end = 0  # end offset and line-break length of the last line handed out
        self.last_eol = 0

    def tell(self) -> int:
        return self.pushed[-1][0] if self.pushed else self.base + self.pos

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self.source.read(self.offset, self.offset + self.source.fill_size())
        self.offset += len(data)
        self.buf = self.buf[self.pos:] + data
        self.base += self.pos
        self.pos = 0
        if not data:
            self.eof = True
            return False
        if b"\x00" in data:
            self.nul = True
        return True

    def _next(self) -> tuple[int, bytes] | None:
        while True:
            m = LINE_RE.match(self.buf, self.pos)
            end = m.end()  # type: ignore[union-attr]
            complete = end > self.pos and (end < len(self.buf) or self.eof or (
                self.buf[end - 1:end] == b"\n"))
            if complete and not self.eof and end == len(self.buf) and self.buf[end - 1:end] == b"\r":
                complete = False  # maybe the first half of a CRLF
            if complete and self.buf[end - 1:end] not in (b"\n", b"\r") and not self.eof:
                complete = False  # no line end yet
            if complete:
                off = self.base + self.pos
                line = self.buf[self.pos:end]
                self.pos = end
                return off, line
            if end == self.pos and self.eof:
                return None
            if len(self.buf) - self.pos > LONG_LINE:
                self.long_line = True  # a fragment; it cannot be a boundary line
                off = self.base + self.pos
                line = self.buf[self.pos:self.pos + LONG_LINE]
                self.pos += LONG_LINE
                return off, line
            if not self._fill() and self.pos >= len(self.buf):
                return None

    def readline(self, matchers: list) -> tuple[int, bytes] | None:
        item = self.pushed.pop() if self.pushed else self._next()
        if item is None:
            self.at_boundary = False
            return None
        line = item[1]
        if line[:2] == b"--":
            for match in reversed(matchers):
                if match(line):
                    self.pushed.append(item)
                    self.at_boundary = True
                    return None
        self.last_end = item[0] + len(line)
        self.last_eol = eol_len(line)
        return item

    def unread(self, item: tuple[int, bytes]) -> None:
        self.pushed.append(item)

    def skip_body(self, matchers: list) -> tuple[int, int] | None:
        """Consume lines up to a boundary line of `matchers` (left unread) or the end, the
        fast way: only lines starting with "--" are looked at. Returns (end offset of the
        last line consumed, the length of its line break), or None if none was consumed."""
        last: tuple[int, int] | None = None
        while self.pushed:
            item = self.readline(matchers)
            if item is None:
                return last
            last = (item[0] + len(item[1]), eol_len(item[1]))
        while True:
            buf, pos, n = self.buf, self.pos, len(self.buf)
            if self.eof:
                safe = n
            else:  # complete lines only (a CR at the very end may be half of a CRLF)
                cut = max(buf.rfind(b"\n", pos), buf.rfind(b"\r", pos, n - 1))
                safe = cut + 1 if cut >= 0 else pos
            j = buf.find(b"--", pos, safe)
            while j != -1:
                if j == pos or buf[j - 1] in (10, 13):
                    line = LINE_RE.match(buf, j, safe).group()  # type: ignore[union-attr]
                    if any(match(line) for match in matchers):
                        if j > pos:
                            last = (self.base + j, 2 if j - 2 >= pos and buf[j - 2:j] == b"\r\n" else 1)
                        self.pos = j
                        self.at_boundary = True
                        if last:
                            self.last_end, self.last_eol = last
                        return last
                    j = buf.find(b"--", j + 2, safe)
                else:
                    j = buf.find(b"--", j + 1, safe)
            if safe == pos and not self.eof and n - pos > LONG_LINE:
                self.long_line = True  # one line of megabytes: consumed as it is
                safe = n
            if safe > pos:
                end_byte = buf[safe - 1]
                eol = (2 if safe - 2 >= pos and buf[safe - 2] == 13 else 1) if end_byte == 10 else (
                    1 if end_byte == 13 else 0)
                last = (self.base + safe, eol)
                self.last_end, self.last_eol = last
                self.pos = safe
            if self.eof:
                self.at_boundary = False
                return last
            self._fill()

