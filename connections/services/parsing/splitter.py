"""The one MIME splitter: a mail's leaf parts as byte ranges, cut by the boundaries exactly as
the email package's feedparser cuts them, over any Source (a file, or bytes / a memoryview in
memory) — the mail is never held whole by the splitter itself.

A leaf is a part that is not a multipart with a usable boundary: a text or attachment part,
a nested message, or a multipart kept raw. What the splitter does not reproduce raises
Fallback (strict) or is noted as a problem (best effort).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser

from .attachments import part_content_type
from .header_block import HEADER_LINE, header_block
from .lines import LineReader, eol_len
from .results import ParsedMessage

_NL_START = re.compile(rb"\r\n|\r|\n")


class Fallback(Exception):
    """The splitter would not give the email package's result for this mail."""


@dataclass
class Leaf:
    start: int
    end: int
    body_start: int
    index: str
    in_alternative: bool
    headers: Message
    missing_separator: bool
    before_boundary: bool = False  # a part of a multipart (not the top)
    full_end: int = -1  # the end with the line break before the boundary (parsed in memory)
    in_digest: bool = False
    plain_headers: bool = False  # the header section was read without the email package
    defects: list[str] = field(default_factory=list)  # filled when the leaf is parsed
    parsed: Message | None = None  # the email package's tree of the leaf, once parsed


class Splitter:
    """Splits a mail into its leaf parts (byte ranges) the way the feedparser does."""

    def __init__(self, reader: LineReader, strict: bool, result: ParsedMessage) -> None:
        self.rd = reader
        self.strict = strict
        self.result = result
        self.leaves: list[Leaf] = []
        # Pre-order of the tree for the defects: a leaf, or a multipart's defect names.
        self.order: list[Leaf | list[str]] = []

    def anomaly(self, what: str) -> None:
        if self.strict:
            raise Fallback(what)
        self.result.problem(what)

    def part(self, matchers: list, index: str, in_alternative: bool, depth: int, in_digest: bool = False) -> Message:
        """Splits one part (its header section, then its body up to a boundary of `matchers`);
        returns its headers."""
        rd = self.rd
        start = rd.tell()
        headers, plain, missing, last_eol = self._header_section(matchers, in_digest)
        body_start = rd.tell()
        boundary = None
        if part_content_type(headers).startswith("multipart/"):
            try:
                boundary = headers.get_boundary()
            except Exception:
                boundary = None
        leaf = Leaf(start, start, body_start, index, in_alternative, headers, missing, before_boundary=bool(matchers),
                    in_digest=in_digest, plain_headers=plain)
        if boundary is not None:
            if depth > 40:
                raise Fallback("MIME structure nested too deeply")
            names = [type(d).__name__ for d in headers.defects]
            if missing:
                names.append("MissingHeaderBodySeparatorDefect")
            slot = len(self.order)
            self.order.append(names)
            if self.container(headers, boundary, matchers, index, depth, names):
                return headers
            # No start boundary: the multipart is one leaf (kept raw), as in the email package.
            del self.order[slot]
            end = rd.last_end  # (the feedparser strips no line break from a multipart's payload)
            self._add(leaf, end, end, slot)
            return headers
        # A leaf: everything up to the next boundary of an enclosing multipart (or the end).
        skipped = rd.skip_body(matchers)
        if skipped is not None:
            end, last_eol = skipped
        else:
            end = body_start
        full_end = end
        if matchers and not part_content_type(headers).startswith(("multipart/", "message/")):
            # The line break before a boundary belongs to the boundary (the feedparser
            # strips it after every part of a multipart, also at the end of the input).
            # Parsed in memory, the whole range is parsed and after_subpart strips it.
            end -= last_eol
        self._add(leaf, end, full_end, len(self.order))
        return headers

    def _header_section(self, matchers: list, in_digest: bool) -> tuple[Message, bool, bool, int]:
        """(headers, built without the email package, the blank line missing, the length of
        the last line break read)."""
        rd = self.rd
        lines: list[bytes] = []
        missing = False
        last_eol = 0
        while True:
            item = rd.readline(matchers)
            if item is None:
                break
            line = item[1]
            if not HEADER_LINE.match(line):
                if _NL_START.match(line):
                    last_eol = eol_len(line)
                else:
                    missing = True
                    rd.unread(item)
                break
            lines.append(line)
            last_eol = eol_len(line)
            if len(lines) > 100_000:
                self.anomaly("header section too long")
                break
        block = b"".join(lines)
        headers = header_block(block, 0, len(block))
        plain = headers is not None
        if headers is None:
            headers = BytesHeaderParser(policy=policy.compat32).parsebytes(block)
        if in_digest:
            headers.set_default_type("message/rfc822")
        return headers, plain, missing, last_eol

    def _add(self, leaf: Leaf, end: int, full_end: int, slot: int) -> None:
        leaf.end = max(end, leaf.start)
        leaf.full_end = max(full_end, leaf.start)
        leaf.body_start = max(min(leaf.body_start, leaf.end), leaf.start)
        self.leaves.append(leaf)
        self.order.insert(slot, leaf)

    def container(self, headers: Message, boundary: str, matchers: list, index: str, depth: int,
                  defects: list[str]) -> bool:
        """Splits a multipart as the feedparser does; False: no start boundary (the caller
        makes it a leaf, having consumed it up to its end)."""
        rd = self.rd
        ctype = part_content_type(headers)
        if str(headers.get("content-transfer-encoding", "8bit")).lower() not in ("7bit", "8bit", "binary"):
            defects.append("InvalidMultipartContentTransferEncodingDefect")
        try:
            separator = ("--" + boundary).encode("ascii", "surrogateescape")
        except UnicodeEncodeError:
            raise Fallback("non-ASCII boundary")
        own = re.compile(re.escape(separator) + rb"(--)?[ \t]*(\r\n|\r|\n)?$").match
        if not self._preamble(own, matchers):
            return False
        alternative = ctype == "multipart/alternative"
        digest = ctype == "multipart/digest"
        n = 0
        while True:
            while True:  # repeated boundary lines make no empty parts
                item = rd.readline(matchers)
                if item is None:
                    # The feedparser makes one more, empty part here.
                    n += 1
                    self.part(matchers + [own], f"{index}.{n}" if index else str(n), alternative, depth + 1, digest)
                    defects.append("CloseBoundaryNotFoundDefect")
                    return True
                mo = own(item[1])
                if not mo:
                    rd.unread(item)
                    break
            n += 1
            self.part(matchers + [own], f"{index}.{n}" if index else str(n), alternative, depth + 1, digest)
            item = rd.readline(matchers)
            if item is None:
                defects.append("CloseBoundaryNotFoundDefect")
                return True
            mo = own(item[1])
            if not mo:
                raise Fallback("splitter lost its place")
            if mo.group(1):
                break
        self._epilogue(matchers)
        return True

    def _preamble(self, own, matchers: list) -> bool:
        """Reads up to the first boundary line; False: there is none (or a close one first)."""
        while True:
            item = self.rd.readline(matchers)
            if item is None:
                return False
            mo = own(item[1])
            if mo:
                if mo.group(1):
                    self._epilogue(matchers)
                    return False
                return True

    def _epilogue(self, matchers: list) -> None:
        while self.rd.readline(matchers) is not None:
            pass

