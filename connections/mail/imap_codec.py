"""IMAP wire encodings: folder names in modified UTF-7 (RFC 3501 5.1.3), quoted strings, compact
UID sets, and imaplib's replies as text. No Django."""
from __future__ import annotations

import base64
import re
from typing import Iterable, Iterator

__all__ = ["imap_utf7_encode", "imap_utf7_decode", "quote_folder", "unquote", "uid_sets", "reply_text"]


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


def quote_folder(name: str) -> str:
    """A folder name as an IMAP quoted string, modified UTF-7 encoded."""
    encoded = imap_utf7_encode(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote(raw: bytes) -> bytes:
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


def reply_text(data) -> str:
    if isinstance(data, (list, tuple)):
        data = data[-1] if data else b""
        if isinstance(data, tuple):
            data = data[0]
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data or "")
