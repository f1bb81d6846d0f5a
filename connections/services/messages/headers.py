"""A stored message's header fields for display: RFC 2047 words decoded, the sender split
into display name and address, and the raw header block unfolded."""
from __future__ import annotations

import email.errors
import email.header
import email.utils
import re
from dataclasses import dataclass

from ...models import StoredMessage


def decode_encoded_words(value: str) -> str:
    """Decode RFC 2047 encoded words left in a stored header value (headers off the wire are
    decoded by parsing.headers.decode_raw_header_value); never raises."""
    if not value or "=?" not in value:
        return value or ""
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        return value


_SIMPLE_FROM = re.compile(r'^\s*(?:"([^"\\]*)"|([^"<>,;:@\\]*?))\s*<([^<>\s,;]+@[^<>\s,;]+)>\s*$')


def sender(from_header: str) -> tuple[str, str]:
    """(display name, address) of a From header, tolerant of broken headers."""
    decoded = decode_encoded_words(from_header)
    simple = _SIMPLE_FROM.match(decoded)
    if simple:  # the common 'Name <addr>' shape, without the full RFC 5322 parser
        name = (simple[1] if simple[1] is not None else simple[2] or "").strip()
        return name or simple[3], simple[3]
    try:
        name, address = email.utils.parseaddr(decoded)
    except (ValueError, IndexError, TypeError):
        name, address = "", ""
    if not name and not address:
        return decoded.strip(), ""
    return name or address, address
@dataclass
class HeaderLine:
    name: str
    value: str


MAX_HEADER_BYTES = 256 * 1024


def raw_headers(*, message: StoredMessage) -> list[HeaderLine]:
    """All header fields of the raw message, unfolded and RFC 2047-decoded.

    Reads only the header block (at most 256 KB); a missing raw file gives [].
    """
    try:
        with message.raw.open("rb") as fh:
            head = fh.read(MAX_HEADER_BYTES)
    except (OSError, ValueError):
        return []
    match = re.search(rb"\r?\n\r?\n", head)
    block = head[: match.start()] if match else head
    lines: list[HeaderLine] = []
    for raw_line in re.split(rb"\r?\n(?![ \t])", block):
        if b":" not in raw_line:
            continue
        name, _, value = raw_line.partition(b":")
        text = value.decode("utf-8", errors="replace") if _is_utf8(value) else value.decode("latin-1")
        text = re.sub(r"\r?\n[ \t]+", " ", text).strip()
        lines.append(HeaderLine(name=name.decode("ascii", errors="replace").strip(), value=decode_encoded_words(text)))
    return lines


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
