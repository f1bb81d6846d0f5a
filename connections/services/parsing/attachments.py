"""Attachments: their record (name, type, inline, content id, size, sha256; bytes in memory
or in a temporary file) and the one file-name sanitiser."""
from __future__ import annotations

import email.utils
import hashlib
import os
import re
import tempfile
import unicodedata
from email.message import Message
from typing import Iterator

from .charsets import clean_text
from .headers import decode_raw_header_value, header, raw_header, surrogates_to_text
from .results import ParsedAttachment, ParsedMessage

_PATH_SEPARATOR = re.compile(r"[/\\]")
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_filename(name: str, *, default: str = "") -> str:
    """The one file-name sanitiser (names read from mail, names offered for download): the
    last path component of `name`, without control or other non-printing characters (Unicode
    category C: NUL, CR/LF, bidi overrides, lone surrogates), without leading/trailing dots
    and blanks, at most 200 characters (the extension kept); `default` when nothing is left."""
    name = _PATH_SEPARATOR.split(clean_text(name or ""))[-1]
    if name.isascii():
        name = _ASCII_CONTROL.sub("", name)
    else:
        name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().strip(".").strip()
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 200 - len(ext) - 1] + "." + ext) if dot and len(ext) < 20 else name[:200]
    return name or default


_EXTENSIONS = {
    "text/plain": ".txt", "text/html": ".html", "message/rfc822": ".eml", "image/png": ".png",
    "image/jpeg": ".jpg", "image/gif": ".gif", "application/pdf": ".pdf", "text/calendar": ".ics",
    "message/delivery-status": ".txt", "text/rfc822-headers": ".txt",
}


def part_filename(part: Message, result: ParsedMessage, index: str) -> str:
    name = ""
    try:
        name = part.get_filename() or ""
    except Exception as exc:
        result.problem(f"part {index}: unreadable file name ({type(exc).__name__})")
    if not name:
        try:
            name = part.get_param("name", header="content-type") or ""
            if isinstance(name, tuple):  # RFC 2231 (charset, language, value)
                name = email.utils.collapse_rfc2231_value(name)
        except Exception:
            name = ""
    name = str(name)
    if "=?" in name:
        name = decode_raw_header_value(name)
    else:
        name = surrogates_to_text(name)
    return safe_filename(name)


def part_content_type(part: Message) -> str:
    try:
        ctype = part.get_content_type()
    except Exception:
        ctype = "application/octet-stream"
    return clean_text(ctype)[:255]


def part_disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:
        return None


def part_content_id(part: Message) -> str:
    value = raw_header(part, "Content-ID")
    if not value:
        return ""
    return clean_text(str(value)).strip().strip("<>").strip()[:255]


def attachment(part: Message, data: bytes, result: ParsedMessage, index: str, *, raw_kept: bool = False,
               content_type: str | None = None) -> ParsedAttachment:
    ctype = content_type or part_content_type(part)
    name = part_filename(part, result, index)
    if not name:
        if ctype == "message/rfc822":
            subject = ""
            try:
                inner = part.get_payload(0)
                subject = header(inner, "Subject", ParsedMessage())
            except Exception:
                pass
            name = safe_filename(subject)[:100] + ".eml" if subject.strip() else f"message-{index}.eml"
        else:
            name = f"part-{index}{_EXTENSIONS.get(ctype, '.bin')}"
    cid = part_content_id(part)
    how = part_disposition(part)
    inline = how == "inline" or (how is None and bool(cid))
    return ParsedAttachment(
        filename=name, content_type=ctype, inline=inline, content_id=cid, size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), payload=data, raw_kept=raw_kept,
    )


def file_attachment(headers: Message, result: ParsedMessage, index: str, data: Iterator[bytes], tmpdir: str | None,
                    *, raw_kept: bool = False, content_type: str | None = None) -> ParsedAttachment:
    fd, path = tempfile.mkstemp(prefix="tm-part-", dir=tmpdir)
    sha = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in data:
                if chunk:
                    out.write(chunk)
                    sha.update(chunk)
                    size += len(chunk)
    except BaseException:
        os.unlink(path)
        raise
    att = attachment(headers, b"", result, index, raw_kept=raw_kept, content_type=content_type)
    att.payload, att.path, att.size, att.sha256 = None, path, size, sha.hexdigest()
    return att


def spill(att: ParsedAttachment, tmpdir: str | None) -> None:
    """Move an attachment's bytes from memory to a temporary file."""
    fd, att.path = tempfile.mkstemp(prefix="tm-part-", dir=tmpdir)
    with os.fdopen(fd, "wb") as out:
        out.write(att.payload)  # type: ignore[arg-type]
    att.payload = None
