"""A header section read into the email.message.Message the email package's header parser
makes of it (compat32: raw values, folding kept) — built directly when the section is plain,
the email package's work otherwise."""
from __future__ import annotations

import re
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser

HEADER_LINE = re.compile(rb"(From |[\041-\071\073-\176]*:|[\t ])")  # feedparser's headerRE


def find_header_end(raw: bytes, start: int, end: int) -> tuple[int, int] | None:
    """(end of the header block, start of the body) in raw[start:end], or None."""
    if raw.startswith(b"\r\n", start):
        return start, start + 2
    if raw.startswith(b"\n", start):
        return start, start + 1
    crlf = raw.find(b"\r\n\r\n", start, end)
    # An LF-only separator counts only before the CRLF one: searching past it would scan
    # the whole body of every CRLF mail for nothing.
    lf = raw.find(b"\n\n", start, crlf + 2 if crlf != -1 else end)
    if crlf == -1 and lf == -1:
        return None
    if crlf != -1 and lf == -1:
        return crlf + 2, crlf + 4
    return lf + 1, lf + 2


def header_block(raw: bytes, start: int, end: int) -> Message | None:
    """The compat32 Message that BytesHeaderParser makes of raw[start:end] (a header block
    without its blank line), built without feedparser's line machinery; None when the block
    has anything feedparser would treat specially (a defect, a Unix "From " line, a lone CR)
    — the caller then uses the email package. Same headers, same order, same raw values."""
    block = raw[start:end]
    if block.count(b"\r") != block.count(b"\r\n"):
        return None  # lone CRs are line breaks to feedparser
    msg = Message(policy=policy.compat32)
    headers: list[tuple[str, str]] = []
    name = ""
    lines: list[str] = []
    # bytes.splitlines breaks at CR, LF and CRLF only, as feedparser does (str.splitlines
    # would also break at VT, FF and the like).
    for raw_line in block.splitlines(True):
        line = raw_line.decode("ascii", "surrogateescape")
        if raw_line[0] in b" \t":
            if not name:
                return None  # FirstHeaderLineIsContinuationDefect
            lines.append(line)
            continue
        if raw_line.startswith(b"From ") or not HEADER_LINE.match(raw_line):
            return None
        colon = line.find(":")
        if colon <= 0:
            return None  # InvalidHeaderDefect
        if name:
            headers.append(_source_parse(lines))
        name, lines = line[:colon], [line]
    if name:
        headers.append(_source_parse(lines))
    for name, value in headers:
        msg.set_raw(name, value)  # as the feedparser stores a header
    msg.set_payload("")  # as a headers-only parse leaves it
    return msg


def parse_header_section(raw: bytes, start: int = 0, end: int | None = None) -> Message:
    """What BytesHeaderParser(policy=compat32) makes of raw[start:end]: built directly when
    the section is plain (header_block), by the email package otherwise."""
    end = len(raw) if end is None else end
    return header_block(raw, start, end) or BytesHeaderParser(policy=policy.compat32).parsebytes(raw[start:end])


def _source_parse(lines: list[str]) -> tuple[str, str]:
    """policy.compat32.header_source_parse: (name, value with its folding kept)."""
    name, value = lines[0].split(":", 1)
    value = value.lstrip(" \t") + "".join(lines[1:])
    return name, value.rstrip("\r\n")

