"""A fast path for the commonest outbox message: text/plain only, ASCII, short lines.

Building a message with the email package costs most of the time of an enqueue (header
objects, folding, the generator). For a message with no HTML, no attachments, the default
body options, ASCII header values that need no encoding, quoting or folding, and an ASCII
body whose lines fit in 78 characters, the bytes the email package would write are simple to
write directly: `build_simple` writes exactly those bytes (tests/outbound compares the two
byte for byte over many inputs) and returns None for anything else, which then takes the
email package's path.
"""
from __future__ import annotations

import re
from datetime import datetime
from email.headerregistry import Address
from email.utils import format_datetime

__all__ = ["build_simple"]

# Header values the email package writes as they are: printable ASCII, single spaces, no
# encoded-word look-alikes, no leading or trailing space.
_PLAIN_VALUE = re.compile(r"^[!-~]+(?: [!-~]+)*$")
# Display names written without quotes: atext words separated by single spaces.
_ATEXT_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_MAX_LINE = 78


def _address(address: Address) -> str | None:
    name = address.display_name
    spec = address.addr_spec
    if not spec.isascii() or '"' in spec or "\\" in spec:
        return None
    if not name:
        return spec
    if not _ATEXT_NAME.match(name) or "=?" in name:
        return None
    return f"{name} <{spec}>"


def _header(name: str, value: str) -> bytes | None:
    if value and (not _PLAIN_VALUE.match(value) or "=?" in value):
        return None
    line = f"{name}: {value}" if value else f"{name}:"
    if len(line) > _MAX_LINE:
        return None
    return line.encode("ascii") + b"\r\n"


def build_simple(
    *,
    from_address: Address,
    to: list[Address],
    cc: list[Address],
    reply_to: list[Address],
    subject: str,
    text: str,
    html: str,
    attachments: list,
    extra_headers: dict[str, str],
    message_id: str,
    date: datetime,
    automatic_body: bool,
    overridable: frozenset[str],
) -> bytes | None:
    """The message's bytes as mime.build_message + to_bytes would write them, or None."""
    if html or attachments or not automatic_body or not text.isascii():
        return None
    lines = text.encode("ascii").splitlines()
    if any(len(line) > _MAX_LINE for line in lines):
        return None
    parts: list[bytes | None] = []
    sender = _address(from_address)
    if sender is None:
        return None
    parts.append(_header("From", sender))
    for name, addresses in (("To", to), ("Cc", cc), ("Reply-To", reply_to)):
        if addresses:
            formatted = [_address(a) for a in addresses]
            if None in formatted:
                return None
            parts.append(_header(name, ", ".join(formatted)))  # type: ignore[arg-type]
    parts.append(_header("Subject", subject))
    parts.append(_header("Date", format_datetime(date)))
    parts.append(_header("Message-ID", message_id))
    for name, value in extra_headers.items():
        if name.lower() in overridable:
            continue
        parts.append(_header(name, value))
    if None in parts:
        return None
    return b"".join(parts) + (  # type: ignore[arg-type]
        b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 7bit\r\nMIME-Version: 1.0\r\n\r\n'
        + b"".join(line + b"\r\n" for line in lines) + (b"" if lines else b"\r\n")
    )
