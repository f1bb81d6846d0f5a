"""Parse a raw mail into headers, bodies and attachments — without ever losing it.

Python's email package does the MIME work (the fast compat32 policy for the structure,
policy.default's header parser for the decoded headers); everything it can trip on is
caught per header and per part. Known traps, all handled here:

- a multipart part without a boundary parses as a non-multipart whose get_content()
  raises KeyError (we never call get_content(); the part is kept raw as an attachment);
- unknown charsets (x-unknown, x-mac-cyrillic) raise LookupError (aliases, then a
  fallback decode, and a recorded problem);
- broken address/date headers raise AttributeError/ValueError/IndexError on access (the
  raw header text is decoded instead);
- get_body() may return a multipart/related container and iter_attachments() yields
  containers (we walk the tree ourselves);
- NUL bytes cannot be stored in PostgreSQL text columns (removed from text, noted).

A part that cannot be decoded is kept raw as an attachment, and the message carries a
list of parse problems. Mails larger than INBOUND_PARSE_IN_MEMORY_MAX are parsed by a
streaming MIME splitter (`parse_file`) that never holds the whole mail in memory.
"""
from __future__ import annotations

import binascii
import codecs
import contextvars
import email.header
import email.utils
import hashlib
import io
import os
import quopri
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone
from email import policy
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from typing import BinaryIO, Iterator

import pybase64

MAX_PROBLEMS = 50
MAX_HEADER_CHARS = 20_000

_HEADER_FIELDS = {
    "message_id": "Message-ID",
    "from_header": "From",
    "to_header": "To",
    "cc_header": "Cc",
    "reply_to_header": "Reply-To",
    "subject": "Subject",
}

# Charset names seen in the wild that Python's codecs do not know by that name.
_CHARSET_ALIASES = {
    "x-unknown": "",
    "unknown-8bit": "",
    "x-user-defined": "",
    "default": "",
    "x-mac-cyrillic": "mac_cyrillic",
    "x-mac-roman": "mac_roman",
    "x-mac-greek": "mac_greek",
    "x-mac-turkish": "mac_turkish",
    "x-mac-ce": "mac_latin2",
    "x-mac-centraleurroman": "mac_latin2",
    "x-mac-icelandic": "mac_iceland",
    "macintosh": "mac_roman",
    "x-sjis": "shift_jis",
    "x-euc-jp": "euc_jp",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "x-gbk": "gbk",
    "gb2312": "gb18030",  # a superset; mails labelled gb2312 often use GBK characters
    "gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "utf8": "utf-8",
    "x-utf8": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
    "ansi_x3.4-1968": "ascii",
    "us-ascii": "cp1252",  # 8-bit bytes in "us-ascii" text are nearly always cp1252
    "ascii": "cp1252",
    "iso-8859-1": "cp1252",  # as browsers do (WHATWG encoding standard)
    "latin1": "cp1252",
}


@dataclass
class ParsedAttachment:
    filename: str
    content_type: str
    inline: bool
    content_id: str
    size: int
    sha256: str
    # Either the bytes (in-memory parse) or the path of a temporary file (streaming parse).
    payload: bytes | None = None
    path: str | None = None
    raw_kept: bool = False  # True: the part could not be decoded and is its raw body

    def open(self) -> BinaryIO:
        if self.payload is not None:
            return io.BytesIO(self.payload)
        assert self.path is not None
        return open(self.path, "rb")

    def cleanup(self) -> None:
        if self.path:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None


@dataclass
class ParsedMessage:
    message_id: str = ""
    from_header: str = ""
    to_header: str = ""
    cc_header: str = ""
    reply_to_header: str = ""
    subject: str = ""
    date: datetime | None = None
    text_body: str = ""
    html_body: str = ""
    safe_html: str | None = None  # html_body sanitised (services.safe_html), set by storage
    attachments: list[ParsedAttachment] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS and text not in self.problems:
            self.problems.append(_clean_text(text)[:500])

    def header_fields(self) -> dict[str, object]:
        return {
            "message_id": self.message_id,
            "from_header": self.from_header,
            "to_header": self.to_header,
            "cc_header": self.cc_header,
            "reply_to_header": self.reply_to_header,
            "subject": self.subject,
            "date": self.date,
        }

    def cleanup(self) -> None:
        for att in self.attachments:
            att.cleanup()


# --------------------------------------------------------------------------- text helpers


def _clean_text(text: str) -> str:
    """Text that PostgreSQL accepts: no NUL, no lone surrogates."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def _codec_for(charset: str | None) -> str | None:
    """A Python codec name for a MIME charset, or None when unknown/unusable."""
    if not charset:
        return None
    name = charset.strip().strip('"').strip("'").lower()
    if name in _CHARSET_ALIASES:
        return _CHARSET_ALIASES[name] or None
    for candidate in (name, name.replace("_", "-"), name[2:] if name.startswith("x-") else ""):
        if not candidate:
            continue
        try:
            return codecs.lookup(candidate).name
        except LookupError:
            continue
    return None


def decode_bytes(data: bytes, charset: str | None, problems: ParsedMessage | None = None, where: str = "") -> str:
    """Decode text in its declared charset, falling back to UTF-8 then cp1252. Never raises."""
    codec = _codec_for(charset)
    if charset and codec is None and problems is not None:
        problems.problem(f"{where}unknown charset {charset!r}; decoded as UTF-8/cp1252")
    if codec and _is_single_byte(codec) and _is_multibyte_utf8(data):
        # UTF-8 mislabelled as a single-byte charset ("ProtecciÃ³n"): text in a real
        # single-byte charset is practically never valid UTF-8 with multi-byte sequences.
        if problems is not None:
            problems.problem(f"{where}text labelled {charset} is UTF-8; decoded as UTF-8")
        return _clean_text(data.decode("utf-8"))
    if codec:
        try:
            return _clean_text(data.decode(codec))
        except (UnicodeDecodeError, LookupError):
            pass
        except Exception:  # some codecs (utf-7, iso-2022) raise odd errors on garbage
            pass
        if codec.startswith("iso2022_jp"):
            # Microsoft's ISO-2022-JP (CP50220) carries NEC/IBM extension characters that
            # Python's codec refuses; they decode through Shift_JIS (cp932).
            try:
                return _clean_text(_iso2022jp_via_cp932(data))
            except (UnicodeDecodeError, ValueError):
                pass
    if codec != "utf-8":
        try:
            return _clean_text(data.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    if codec and problems is not None:
        problems.problem(f"{where}text is not valid {charset}; decoded with a fallback")
    if codec and codec != "utf-8":
        # A multi-byte charset with a few bad bytes: keep the rest readable.
        try:
            return _clean_text(data.decode(codec, "replace"))
        except Exception:
            pass
    # Undeclared or mislabelled UTF-8: nearly always Windows-1252/Latin-1 in practice.
    # cp1252 leaves five bytes undefined; latin-1 maps everything.
    try:
        return _clean_text(data.decode("cp1252"))
    except UnicodeDecodeError:
        return _clean_text(data.decode("latin-1"))


_SINGLE_BYTE_PREFIXES = ("cp125", "iso8859", "koi8", "mac_", "latin_1", "cp437", "cp85", "cp86", "cp874",
                         "tis_620", "ptcp154", "kz1048", "hp_roman8", "ascii")
_NON_ASCII = re.compile(rb"[\x80-\xff]")


def _is_single_byte(codec: str) -> bool:
    return codec.startswith(_SINGLE_BYTE_PREFIXES)


def _is_multibyte_utf8(data: bytes) -> bool:
    """Valid UTF-8 with at least one multi-byte sequence (pure ASCII is not evidence)."""
    if not _NON_ASCII.search(data):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _iso2022jp_via_cp932(data: bytes) -> str:
    out = bytearray()
    mode = "ascii"
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == 0x1B:
            seq = data[i + 1:i + 3]
            if seq in (b"$B", b"$@"):
                mode = "jis"
            elif seq in (b"(B", b"(J"):
                mode = "ascii"
            elif seq == b"(I":
                mode = "kana"
            else:
                raise ValueError("unknown escape sequence")
            i += 3
            continue
        if mode == "jis" and b not in (0x0A, 0x0D):
            if i + 1 >= n:
                raise ValueError("truncated")
            c1, c2 = b, data[i + 1]
            if c1 & 1:
                s2 = c2 + 0x1F
                if s2 >= 0x7F:
                    s2 += 1
            else:
                s2 = c2 + 0x7E
            s1 = ((c1 - 0x21) >> 1) + 0x81
            if s1 > 0x9F:
                s1 += 0x40
            out += bytes((s1, s2))
            i += 2
            continue
        out.append(b + 0x80 if mode == "kana" and 0x21 <= b <= 0x5F else b)
        i += 1
    return bytes(out).decode("cp932")


# The charset the mail declares for its text, set per parse (thread/task safe).
_HEADER_CHARSET: contextvars.ContextVar[str | None] = contextvars.ContextVar("header_charset", default=None)


def _surrogates_to_text(value: str, charset: str | None = None) -> str:
    """Header text with raw 8-bit bytes (smuggled as surrogates) decoded.

    Raw 8-bit headers carry no charset: UTF-8 first (RFC 6532), then the charset the
    mail declares for its body, then cp1252.
    """
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogateescape")
        try:
            return _clean_text(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return decode_bytes(raw, charset or _HEADER_CHARSET.get() or "cp1252")


def decode_header_value(value: str) -> str:
    """Decode RFC 2047 encoded words by hand (the fallback when policy.default fails)."""
    value = _surrogates_to_text(str(value))
    if "=?" not in value:
        return _clean_text(" ".join(value.split()) if "\n" in value or "\r" in value else value)
    try:
        pieces = email.header.decode_header(value)
    except Exception:
        return _clean_text(value)
    out: list[str] = []
    for chunk, charset in pieces:
        if isinstance(chunk, bytes):
            out.append(decode_bytes(chunk, charset or "utf-8"))
        else:
            out.append(chunk)
    # decode_header keeps the whitespace between plain and encoded words inconsistently.
    text = "".join(out) if len(pieces) > 1 else out[0] if out else ""
    return _clean_text(" ".join(text.split()))


_LINESEP = re.compile(r"\r|\n")
_FACTORY = policy.default.header_factory


def _raw_values(msg: Message, name: str) -> list[str]:
    """The header's raw values (undecoded; 8-bit bytes as surrogates), unfolded."""
    # Indexed once per message: a mail's headers are looked up a dozen times while parsing
    # (and never change meanwhile).
    index = msg.__dict__.get("_tenantmail_headers")
    if index is None or index[0] != len(msg._headers):
        values: dict[str, list[str]] = {}
        for key, value in msg.raw_items():
            values.setdefault(key.lower(), []).append(_LINESEP.sub("", str(value)))
        index = msg.__dict__["_tenantmail_headers"] = (len(msg._headers), values)
    return list(index[1].get(name.lower(), ()))


def _header(msg: Message, name: str, result: ParsedMessage) -> str:
    """One header, decoded; never raises (broken headers fall back to a raw decode).

    The mail is parsed with the fast compat32 policy; only these few headers go through
    policy.default's header parser (RFC 2047, address syntax).
    """
    values = _raw_values(msg, name)
    if not values:
        return ""
    if name.lower() not in ("to", "cc"):
        values = values[:1]
    simple = [_simple_header(name, v) for v in values]
    if all(v is not None for v in simple):
        return ", ".join(simple)[:MAX_HEADER_CHARS]  # type: ignore[arg-type]
    try:
        text = ", ".join(str(_FACTORY(name, v)) for v in values)
    except Exception as exc:  # broken address headers raise on parse
        result.problem(f"header {name}: {type(exc).__name__}; raw value decoded instead")
        text = ", ".join(decode_header_value(v) for v in values)
    if "=?" in text:  # encoded words the header parser left alone (e.g. inside quotes)
        text = decode_header_value(text)
    if "\ufffd" in text or "\x1b" in text:
        # policy.default replaced raw 8-bit bytes or failed on a charset it does not know
        # (iso-8859-8-i, CP50220 ISO-2022-JP, GBK labelled gb2312): decode the raw value.
        again = ", ".join(decode_header_value(v) for v in values)
        if again.count("\ufffd") < text.count("\ufffd") or "\x1b" in text:
            text = again
    return _clean_text(_surrogates_to_text(text))[:MAX_HEADER_CHARS]


_PLAIN_TEXT = re.compile(r"[\x20-\x7e\t]*")
_SIMPLE_ADDR = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")
_SIMPLE_NAME = re.compile(r"[A-Za-z0-9 !#$%&'*+/=?^_`{|}~.-]*")
_NAME_SPECIALS = set('()<>@,:;."[]\\')
_ADDRESS_HEADERS = {"from", "to", "cc", "reply-to", "sender", "bcc"}


def _simple_header(name: str, value: str) -> str | None:
    """The decoded form of a plain ASCII header without encoded words, comments or quoting
    subtleties — what policy.default's parser returns for it, without the parser's cost
    (it dominates the parse of an ordinary mail). None: use the real parser."""
    if "=?" in value or not _PLAIN_TEXT.fullmatch(value):
        return None
    if name.lower() not in _ADDRESS_HEADERS:
        if name.lower() == "message-id" and not re.fullmatch(r"<[^<>@\s\\\"()]+@[^<>@\s\\\"()]+>", value):
            return None
        return None if "\t" in value else value
    value = value.strip()
    if _SIMPLE_ADDR.fullmatch(value):
        return value
    if not value.endswith(">") or value.count("<") != 1:
        return None
    display, _, addr = value[:-1].partition("<")
    display = display.strip()
    if not _SIMPLE_ADDR.fullmatch(addr):
        return None
    if display.startswith('"') and display.endswith('"') and len(display) >= 2:
        display = display[1:-1]
        if '"' in display or "\\" in display:
            return None
    if not _SIMPLE_NAME.fullmatch(display):
        return None
    display = " ".join(display.split())
    if not display:
        return addr
    if _NAME_SPECIALS & set(display):
        return f'"{display}" <{addr}>'
    return f"{display} <{addr}>"


def _raw_header(msg: Message, name: str) -> str:
    values = _raw_values(msg, name)
    return values[0] if values else ""


def _date(msg: Message, result: ParsedMessage) -> datetime | None:
    raw = _raw_header(msg, "Date")
    if not raw.strip():
        return None
    try:
        # What policy.default's DateHeader does, without building the header object.
        value = email.utils.parsedate_to_datetime(_surrogates_to_text(raw).strip())
    except Exception:
        value = None
    if value is None and raw:
        try:
            value = email.utils.parsedate_to_datetime(raw)
        except Exception:
            value = None
    if value is None:
        if raw.strip():
            result.problem(f"unreadable Date header {raw.strip()[:80]!r}")
        return None
    if value.tzinfo is None:  # "-0000" or no zone: the RFC says UTC is the best guess
        value = value.replace(tzinfo=dt_timezone.utc)
    try:
        value.astimezone(dt_timezone.utc)
    except (OverflowError, ValueError):
        result.problem(f"Date header out of range {raw.strip()[:80]!r}")
        return None
    return value


def _message_id(msg: Message, result: ParsedMessage) -> str:
    value = _header(msg, "Message-ID", result).strip()
    return value[:998]


# --------------------------------------------------------------------------- parts


def _safe_filename(name: str) -> str:
    name = _clean_text(name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip().strip(".") or ""
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 200 - len(ext) - 1] + "." + ext) if dot and len(ext) < 20 else name[:200]
    return name


_EXTENSIONS = {
    "text/plain": ".txt", "text/html": ".html", "message/rfc822": ".eml", "image/png": ".png",
    "image/jpeg": ".jpg", "image/gif": ".gif", "application/pdf": ".pdf", "text/calendar": ".ics",
    "message/delivery-status": ".txt", "text/rfc822-headers": ".txt",
}


def _filename(part: Message, result: ParsedMessage, index: str) -> str:
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
        name = decode_header_value(name)
    else:
        name = _surrogates_to_text(name)
    return _safe_filename(name)


def _content_type(part: Message) -> str:
    try:
        ctype = part.get_content_type()
    except Exception:
        ctype = "application/octet-stream"
    return _clean_text(ctype)[:255]


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:
        return None


def _content_id(part: Message) -> str:
    value = _raw_header(part, "Content-ID")
    if not value:
        return ""
    return _clean_text(str(value)).strip().strip("<>").strip()[:255]


def _raw_body(part: Message) -> bytes:
    """The part's body as it was sent (no transfer decoding)."""
    payload = part.get_payload()
    if isinstance(payload, str):
        # 8-bit bytes come back from their surrogates; any real non-ASCII text as UTF-8.
        return payload.encode("utf-8", "surrogateescape")
    if isinstance(payload, bytes):
        return payload
    return _serialize(part, result_linesep(part))


def result_linesep(part: Message) -> str:
    return getattr(part, "_tenantmail_linesep", "\n")


def _serialize(msg: Message, linesep: str = "\n") -> bytes:
    buf = io.BytesIO()
    pol = policy.compat32.clone(linesep=linesep)
    BytesGenerator(buf, mangle_from_=False, maxheaderlen=0, policy=pol).flatten(msg)
    return buf.getvalue()


def _decoded_payload(part: Message, result: ParsedMessage, index: str) -> tuple[bytes, bool]:
    """Transfer-decoded bytes, or the raw body when decoding fails (flag True)."""
    try:
        payload = part.get_payload(decode=True)
    except Exception as exc:
        result.problem(f"part {index}: cannot decode ({type(exc).__name__}); kept raw")
        return _raw_body(part), True
    if payload is None:
        return _raw_body(part), True
    for defect in getattr(part, "defects", []) or []:
        name = type(defect).__name__
        if "Base64" in name or "Padding" in name or "InvalidBase64" in name:
            result.problem(f"part {index}: {name}")
    return payload, False


def _attachment(part: Message, data: bytes, result: ParsedMessage, index: str, *, raw_kept: bool = False,
                content_type: str | None = None) -> ParsedAttachment:
    ctype = content_type or _content_type(part)
    name = _filename(part, result, index)
    if not name:
        if ctype == "message/rfc822":
            subject = ""
            try:
                inner = part.get_payload(0)
                subject = _header(inner, "Subject", ParsedMessage())
            except Exception:
                pass
            name = _safe_filename(subject)[:100] + ".eml" if subject.strip() else f"message-{index}.eml"
        else:
            name = f"part-{index}{_EXTENSIONS.get(ctype, '.bin')}"
    cid = _content_id(part)
    disposition = _disposition(part)
    inline = disposition == "inline" or (disposition is None and bool(cid))
    return ParsedAttachment(
        filename=name, content_type=ctype, inline=inline, content_id=cid, size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), payload=data, raw_kept=raw_kept,
    )


def _text_of(part: Message, result: ParsedMessage, index: str) -> str | None:
    payload, raw = _decoded_payload(part, result, index)
    if raw:
        return None
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    return decode_bytes(payload, charset, result, where=f"part {index}: ")


def _walk(part: Message, result: ParsedMessage, index: str, *, in_alternative: bool, bodies: dict[str, list[str]]) -> None:
    ctype = _content_type(part)
    maintype = ctype.split("/", 1)[0]

    if part.is_multipart():
        if maintype == "message":
            # message/rfc822 (and message/delivery-status etc.): one attachment, not its innards.
            data = b""
            try:
                data = b"".join(_serialize(sub, result_linesep(part)) for sub in part.get_payload())
            except Exception as exc:
                result.problem(f"part {index}: nested message could not be re-serialised ({type(exc).__name__})")
                data = _raw_body(part)
            result.attachments.append(_attachment(part, data, result, index, content_type=ctype))
            return
        try:
            children = list(part.get_payload())
        except Exception as exc:
            result.problem(f"part {index}: unreadable multipart ({type(exc).__name__}); kept raw")
            result.attachments.append(_attachment(part, _raw_body(part), result, index, raw_kept=True))
            return
        alternative = ctype == "multipart/alternative"
        for n, child in enumerate(children, start=1):
            try:
                _walk(child, result, f"{index}.{n}" if index else str(n), in_alternative=alternative, bodies=bodies)
            except RecursionError:
                raise
            except Exception as exc:  # one unreadable part must not lose the parts after it
                result.problem(f"MIME structure unreadable ({type(exc).__name__}); kept raw")
        return

    if maintype == "multipart":
        # The boundary is missing or never found: get_content() would raise KeyError.
        result.problem(f"part {index or '1'}: {ctype} without usable boundary; kept raw")
        body = _raw_body(part)
        # Keep the text readable too when nothing else is: the common case is a plain mail
        # mislabelled as multipart.
        if not bodies["text"] and body.strip():
            bodies["text"].append(decode_bytes(body, None))
        result.attachments.append(
            _attachment(part, body, result, index or "1", raw_kept=True, content_type="application/octet-stream")
        )
        return

    disposition = _disposition(part)
    filename_given = False
    try:
        filename_given = bool(part.get_filename())
    except Exception:
        filename_given = True
    is_body_candidate = ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename_given
    if is_body_candidate:
        kind = "text" if ctype == "text/plain" else "html"
        if not (in_alternative and bodies[kind]):
            text = _text_of(part, result, index or "1")
            if text is not None:
                bodies[kind].append(text)
                return
        else:
            return  # a second alternative of the same type: the first one is the body
    payload, raw = _decoded_payload(part, result, index or "1")
    result.attachments.append(_attachment(part, payload, result, index or "1", raw_kept=raw))


def _declared_charset(msg: Message) -> str | None:
    try:
        for part in _iter_parts(msg):
            if part.get_content_maintype() == "text":
                charset = part.get_content_charset()
                if charset and _codec_for(charset) not in (None, "ascii", "utf-8"):
                    return charset
    except Exception:
        pass
    return None


def _headers_into(msg: Message, result: ParsedMessage, *, charset: str | None | bool = False) -> None:
    # The charset for raw 8-bit header bytes: the first declared text charset of the mail.
    _HEADER_CHARSET.set(_declared_charset(msg) if charset is False else charset)
    for attr, name in _HEADER_FIELDS.items():
        if attr == "message_id":
            result.message_id = _message_id(msg, result)
        else:
            setattr(result, attr, _header(msg, name, result))
    result.date = _date(msg, result)


def _defects(msg: Message, result: ParsedMessage) -> None:
    for part in _iter_parts(msg):
        for defect in getattr(part, "defects", []) or []:
            _defect_problem(type(defect).__name__, result)


def _defect_problem(name: str, result: ParsedMessage) -> None:
    if name in ("MissingHeaderBodySeparatorDefect",):
        result.problem("malformed header section (a line without a colon)")
    elif name in ("StartBoundaryNotFoundDefect", "CloseBoundaryNotFoundDefect", "NoBoundaryInMultipartDefect",
                  "MultipartInvariantViolationDefect", "InvalidMultipartContentTransferEncodingDefect"):
        result.problem(name)


def _iter_parts(msg: Message) -> Iterator[Message]:
    stack = [msg]
    while stack:
        part = stack.pop()
        yield part
        if part.is_multipart():
            try:
                stack.extend(reversed(part.get_payload()))
            except Exception:
                pass


FAST_PATH_MIN = 16 * 1024  # mails smaller than this always take the email package's path
_FAST_B64_MIN = 8 * 1024  # base64 leaves at least this large are decoded without feedparser


def parse_bytes(raw: bytes) -> ParsedMessage:
    """Parse a whole mail held in memory. Never raises.

    A well-formed multipart mail of some size takes a fast path: the MIME tree is split
    with bytes.find on the boundaries and big base64 leaves are decoded in one C call
    (the email package's feedparser walks them line by line in Python, which dominates
    the cost of mails with attachments). Every other leaf still goes through the email
    package, and anything unusual (a defect, a missing boundary, bad base64) sends the
    whole mail down the email package's path.
    """
    if len(raw) >= FAST_PATH_MIN and b"\x00" not in raw:
        try:
            fast = _fast_parse(raw)
        except RecursionError:
            fast = None
        except Exception:  # the fast path is an optimisation: never let it lose a mail
            fast = None
        if fast is not None:
            return fast
    return _parse_with_email_package(raw)


def _find_header_end(raw: bytes, start: int, end: int) -> tuple[int, int] | None:
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


def _header_block(raw: bytes, start: int, end: int) -> Message | None:
    """The compat32 Message that BytesHeaderParser makes of raw[start:end] (a header block
    without its blank line), built without feedparser's line machinery; None when the block
    has anything feedparser would treat specially (a defect, a Unix "From " line, a lone CR)
    — the caller then uses the email package. Same headers, same order, same raw values."""
    block = raw[start:end]
    if block.count(b"\r") != block.count(b"\r\n"):
        return None  # lone CRs are line breaks to feedparser
    msg = Message(policy=policy.compat32)
    headers = msg._headers  # what set_raw() appends to
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
        if raw_line.startswith(b"From ") or not _HEADER_LINE.match(raw_line):
            return None
        colon = line.find(":")
        if colon <= 0:
            return None  # InvalidHeaderDefect
        if name:
            headers.append(_source_parse(lines))
        name, lines = line[:colon], [line]
    if name:
        headers.append(_source_parse(lines))
    msg._payload = ""  # as a headers-only parse leaves it
    return msg


def _parse_header_section(raw: bytes, start: int = 0, end: int | None = None) -> Message:
    """What BytesHeaderParser(policy=compat32) makes of raw[start:end]: built directly when
    the section is plain (_header_block), by the email package otherwise."""
    end = len(raw) if end is None else end
    return _header_block(raw, start, end) or BytesHeaderParser(policy=policy.compat32).parsebytes(raw[start:end])


def _source_parse(lines: list[str]) -> tuple[str, str]:
    """policy.compat32.header_source_parse: (name, value with its folding kept)."""
    name, value = lines[0].split(":", 1)
    value = value.lstrip(" \t") + "".join(lines[1:])
    return name, value.rstrip("\r\n")


def _leaf_message(raw: bytes, start: int, header_end: int, body_start: int, end: int) -> Message | None:
    """What BytesParser makes of a non-multipart, non-message leaf raw[start:end]: its
    headers, and the rest of its bytes as the payload (feedparser joins the body's lines
    back unchanged). None when the email package must parse it."""
    msg = _header_block(raw, start, header_end)
    if msg is None or msg.get_content_maintype() in ("multipart", "message"):
        return None
    msg._payload = raw[body_start:end].decode("ascii", "surrogateescape")
    return msg


def _uniform_line_breaks(raw: bytes, start: int, end: int) -> int | None:
    """The CR/LF count of raw[start:end] when it is lines of one length ending in CRLF (as
    every MIME encoder writes base64), found by looking at the line ends only; None when
    the lines are not uniform. A stray CR or LF inside a line is not counted: for
    _b64_clean it is a character its decoder skips, so the length check rejects the data."""
    first = raw.find(b"\r\n", start, end)
    if first <= start:
        return None
    stride = first - start + 2
    full = (end - start) // stride  # lines that fit whole, with their CRLF
    stop = start + full * stride
    if raw[first:stop:stride].count(b"\r") != full or raw[first + 1:stop:stride].count(b"\n") != full:
        return None
    return 2 * full + raw.count(b"\r", stop, end) + raw.count(b"\n", stop, end)


def _b64_clean(raw: bytes, start: int = 0, end: int | None = None) -> bytes | None:
    """Decode raw[start:end] if it is base64 made only of the alphabet and CR/LF line
    breaks, with padding only at the end — binascii's strict mode after removing the line
    breaks, at SIMD speed, without copying the slice. None for anything else (the email
    package's lenient rules then decode it and report defects)."""
    end = len(raw) if end is None else end
    last = end
    while last > start and raw[last - 1] in b"\r\n":
        last -= 1
    pad = raw.find(b"=", start, last)
    if pad != -1 and raw[pad:last] not in (b"=", b"=="):
        return None
    padding = last - pad if pad != -1 else 0
    try:
        data = pybase64.b64decode(memoryview(raw)[start:end], validate=False)  # skips the line breaks
    except (binascii.Error, ValueError):
        return None
    # The decoder skipped the line breaks and any other character: the data is clean when
    # what remains after the line breaks decoded whole. The line breaks are counted from
    # the line ends when the lines are uniform (cheap), else byte by byte.
    for count in (_uniform_line_breaks, _all_line_breaks):
        breaks = count(raw, start, end)
        if breaks is None:
            continue
        chars = end - start - breaks
        if chars % 4 == 0 and len(data) == chars // 4 * 3 - padding:
            return data
    return None


def _all_line_breaks(raw: bytes, start: int, end: int) -> int:
    return raw.count(b"\r", start, end) + raw.count(b"\n", start, end)


def _fast_parse(raw: bytes) -> ParsedMessage | None:
    found = _find_header_end(raw, 0, len(raw))
    if found is None:
        return None
    header_end, body_start = found
    top = _parse_header_section(raw, 0, header_end)
    if top.defects:
        return None
    if not top.get_content_type().startswith("multipart/"):
        return _fast_single(raw, body_start, top)
    crlf = raw.count(b"\r\n")
    if crlf and (crlf != raw.count(b"\n") or crlf != raw.count(b"\r")):
        return None  # mixed line ends: the email package splits them its own way
    result = ParsedMessage()
    linesep = "\r\n" if crlf else "\n"
    bodies: dict[str, list[str]] = {"text": [], "html": []}
    leaves: list[tuple] = []
    if not _fast_multipart(raw, body_start, len(raw), top, "", result, leaves, linesep, 0):
        return None
    # In the email package's order: headers (with the first declared text charset, as
    # _declared_charset finds it on the whole tree), the parts, then the parts' defects.
    charset = None
    for kind, leaf, *_ in leaves:
        if kind == "walk":
            charset = _declared_charset(leaf)
            if charset:
                break
    _headers_into(top, result, charset=charset)
    for kind, leaf, index, extra in leaves:
        if kind == "walk":
            _walk(leaf, result, index, in_alternative=extra, bodies=bodies)
        else:
            result.attachments.append(_attachment(leaf, extra[0], result, index, content_type=extra[1]))
    for kind, leaf, *_ in leaves:
        if kind == "walk":
            _defects(leaf, result)
    result.text_body = "\n".join(t for t in bodies["text"] if t)
    result.html_body = "\n".join(t for t in bodies["html"] if t)
    return result


def _fast_single(raw: bytes, body_start: int, top: Message) -> ParsedMessage | None:
    """A single-part text mail: the body decoded without feedparser's line loop."""
    ctype = _content_type(top)
    cte = _raw_header(top, "Content-Transfer-Encoding").strip().lower()
    if ctype not in ("text/plain", "text/html") or cte not in ("", "7bit", "8bit", "binary", "quoted-printable"):
        return None
    if _disposition(top) == "attachment" or (_may_have_filename(top) and top.get_filename()):
        return None
    body = raw[body_start:]
    payload = quopri.decodestring(body) if cte == "quoted-printable" else body
    result = ParsedMessage()
    charset = top.get_content_charset()
    # The header charset _declared_charset would find on this one text part.
    _headers_into(top, result, charset=charset if _codec_for(charset) not in (None, "ascii", "utf-8") else None)
    text = decode_bytes(payload, charset, result, where="part 1: ")
    if ctype == "text/plain":
        result.text_body = text
    else:
        result.html_body = text
    return result


def _may_have_filename(msg: Message) -> bool:
    """False when neither Content-Disposition nor Content-Type can hold a (file)name
    parameter — get_filename() would parse both headers' parameters to say None."""
    return any("name" in value.lower() for key in ("content-disposition", "content-type")
               for value in _raw_values(msg, key))


def _fast_multipart(raw: bytes, start: int, end: int, headers: Message, index: str, result: ParsedMessage,
                    bodies: list[tuple], linesep: str, depth: int) -> bool:
    if depth > 20:
        return False
    if headers.get_content_type() == "multipart/digest":
        return False  # its parts default to message/rfc822: the email package knows that
    boundary = headers.get_boundary()
    if not boundary or not boundary.isascii():
        return False
    if str(headers.get("content-transfer-encoding", "8bit")).lower() not in ("7bit", "8bit", "binary"):
        return False  # InvalidMultipartContentTransferEncodingDefect: the email package reports it
    delim = b"--" + boundary.encode("ascii")
    # Delimiter lines: at the start of a line, followed by "--" (close), or by optional
    # white space and the line end. A longer boundary sharing the prefix does not match.
    positions: list[tuple[int, int, bool]] = []  # (start of the line break before, end of the line, closing)
    cursor = start
    while True:
        if cursor == start and raw.startswith(delim, start):
            hit, line_start = start, start
        else:
            hit = raw.find(b"\n" + delim, cursor, end)
            if hit == -1:
                return False  # no close delimiter: let the email package report it
            line_start = hit + 1
        after = line_start + len(delim)
        closing = raw.startswith(b"--", after)
        eol = raw.find(b"\n", after, end)
        line_end = end if eol == -1 else eol + 1
        rest = raw[after + (2 if closing else 0):line_end].strip()
        if rest:
            cursor = after  # e.g. "--abc-1" while looking for "--abc"
            continue
        before = hit - 1 if hit > start and raw[hit - 1:hit] == b"\r" else hit
        positions.append((before if line_start != start else start, line_end, closing))
        if closing:
            break
        cursor = line_end - 1 if line_end > start else line_end
    if len(positions) < 2 or positions[0][2]:
        return False
    alternative = headers.get_content_type() == "multipart/alternative"
    for n in range(len(positions) - 1):
        part_start, part_end = positions[n][1], positions[n + 1][0]
        child_index = f"{index}.{n + 1}" if index else str(n + 1)
        if not _fast_leaf(raw, part_start, max(part_start, part_end), child_index, alternative, result, bodies,
                          linesep, depth):
            return False
    return True


def _fast_leaf(raw: bytes, start: int, end: int, index: str, in_alternative: bool, result: ParsedMessage,
               bodies: list[tuple], linesep: str, depth: int) -> bool:
    """Splits one leaf; `bodies` collects ("walk", leaf, index, in_alternative) or
    ("att", headers, index, (data, content type)) for _fast_parse to process in order."""
    found = _find_header_end(raw, start, end)
    if found is None:
        return False
    header_end, body_start = found
    headers = _parse_header_section(raw, start, header_end)
    if headers.defects:
        return False
    ctype = _content_type(headers)
    if ctype == "message/delivery-status":
        return False  # header blocks the email package re-serialises its own way
    if ctype.startswith("multipart/"):
        return _fast_multipart(raw, body_start, end, headers, index, result, bodies, linesep, depth + 1)
    cte = _raw_header(headers, "Content-Transfer-Encoding").strip().lower()
    maintype = ctype.split("/", 1)[0]
    if cte == "base64" and end - body_start >= _FAST_B64_MIN and maintype not in ("text", "message"):
        # Only clean base64 takes the shortcut (strict: no stray characters, padding only
        # at the end); the email package's rules decode the rest and report what is wrong.
        data = _b64_clean(raw, body_start, end)
        if data is not None:
            bodies.append(("att", headers, index, (data, ctype)))
            return True
    leaf = (_leaf_message(raw, start, header_end, body_start, end)
            or BytesParser(policy=policy.compat32).parsebytes(raw[start:end]))
    for part in _iter_parts(leaf):
        part._tenantmail_linesep = linesep  # type: ignore[attr-defined]
    bodies.append(("walk", leaf, index, in_alternative))
    return True


def _header_section_into(raw: bytes, result: ParsedMessage) -> None:
    """Subject, sender, date … from the header section alone, whatever the body is."""
    try:
        bounds = _find_header_end(raw, 0, len(raw))
        _headers_into(_parse_header_section(raw, 0, bounds[0] if bounds else len(raw)), result)
    except Exception as exc:
        result.problem(f"headers unreadable ({type(exc).__name__})")


def _parse_with_email_package(raw: bytes) -> ParsedMessage:
    result = ParsedMessage()
    if b"\x00" in raw:
        result.problem("the mail contains NUL bytes (removed from the decoded text)")
    try:
        msg = BytesParser(policy=policy.compat32).parsebytes(raw)
    except Exception as exc:  # a MIME tree too deep for the email package (RecursionError), a parser bug
        what = "its MIME structure is nested too deeply" if isinstance(exc, RecursionError) else type(exc).__name__
        result.problem(f"the mail's body could not be parsed ({what}); the headers were read, the body is kept raw only")
        _header_section_into(raw, result)
        result.text_body = decode_bytes(raw[:1_000_000], None)
        return result
    linesep = "\r\n" if b"\r\n" in raw[:4096] else "\n"
    for part in _iter_parts(msg):
        part._tenantmail_linesep = linesep  # type: ignore[attr-defined]
    _headers_into(msg, result)
    bodies: dict[str, list[str]] = {"text": [], "html": []}
    try:
        _walk(msg, result, "", in_alternative=False, bodies=bodies)
    except RecursionError:
        result.problem("MIME structure nested too deeply; kept raw")
    except Exception as exc:
        result.problem(f"MIME structure unreadable ({type(exc).__name__}); kept raw")
    _defects(msg, result)
    result.text_body = "\n".join(t for t in bodies["text"] if t)
    result.html_body = "\n".join(t for t in bodies["html"] if t)
    return result


# --------------------------------------------------------------------------- streaming parse

_STREAM_TEXT_MAX = 4 * 1024 * 1024  # decoded text bodies larger than this are kept as attachments
# A leaf part (headers + body) up to this size is read and parsed by the email package exactly
# as parse_bytes does; larger leaves are transfer-decoded from the file in chunks.
STREAM_LEAF_IN_MEMORY_MAX = 2 * 1024 * 1024
# A mail whose MIME structure is malformed in a way the splitter does not reproduce (missing
# boundaries, header defects of a multipart, multipart/digest, ...) is parsed by parse_bytes
# when it is at most this large (the same result); a larger one is split best effort.
STREAM_FALLBACK_MAX = 16 * 1024 * 1024
_SPILL_MIN = 64 * 1024  # attachments of in-memory leaves larger than this go to temp files
_CHUNK = 1 << 20
_LONG_LINE = 8 << 20

_LINE_RE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)?")
_HEADER_LINE = re.compile(rb"(From |[\041-\071\073-\176]*:|[\t ])")  # feedparser's headerRE
_NL_START = re.compile(rb"\r\n|\r|\n")
_B64_BODY = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


class _Fallback(Exception):
    """The streaming splitter would not give parse_bytes' result for this mail."""


def _eol_len(line: bytes) -> int:
    if line.endswith(b"\r\n"):
        return 2
    return 1 if line.endswith((b"\n", b"\r")) else 0


class _LineReader:
    """Lines as the email package's feedparser cuts them (CRLF, CR or LF), with file offsets,
    one-line pushback and the feedparser's stack of "false EOF" boundary matchers."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
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
        data = self.fh.read(_CHUNK)
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
            m = _LINE_RE.match(self.buf, self.pos)
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
            if len(self.buf) - self.pos > _LONG_LINE:
                self.long_line = True  # a fragment; it cannot be a boundary line
                off = self.base + self.pos
                line = self.buf[self.pos:self.pos + _LONG_LINE]
                self.pos += _LONG_LINE
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
        self.last_eol = _eol_len(line)
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
            last = (item[0] + len(item[1]), _eol_len(item[1]))
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
                    line = _LINE_RE.match(buf, j, safe).group()  # type: ignore[union-attr]
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
            if safe == pos and not self.eof and n - pos > _LONG_LINE:
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


@dataclass
class _Leaf:
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
    defects: list[str] = field(default_factory=list)  # filled when the leaf is parsed


class _Splitter:
    """Splits a mail into its leaf parts (byte ranges) the way the feedparser does."""

    def __init__(self, reader: _LineReader, strict: bool, result: ParsedMessage) -> None:
        self.rd = reader
        self.strict = strict
        self.result = result
        self.leaves: list[_Leaf] = []
        # Pre-order of the tree for the defects: a leaf, or a multipart's defect names.
        self.order: list[_Leaf | list[str]] = []

    def anomaly(self, what: str) -> None:
        if self.strict:
            raise _Fallback(what)
        self.result.problem(what)

    def part(self, matchers: list, index: str, in_alternative: bool, depth: int, in_digest: bool = False) -> Message:
        rd = self.rd
        start = rd.tell()
        lines: list[bytes] = []
        missing = False
        last_eol = 0
        while True:
            item = rd.readline(matchers)
            if item is None:
                break
            line = item[1]
            if not _HEADER_LINE.match(line):
                if _NL_START.match(line):
                    last_eol = _eol_len(line)
                else:
                    missing = True
                    rd.unread(item)
                break
            lines.append(line)
            last_eol = _eol_len(line)
            if len(lines) > 100_000:
                self.anomaly("header section too long")
                break
        headers = _parse_header_section(b"".join(lines))
        if in_digest:
            headers.set_default_type("message/rfc822")
        body_start = rd.tell()
        boundary = None
        if _content_type(headers).startswith("multipart/"):
            try:
                boundary = headers.get_boundary()
            except Exception:
                boundary = None
        if boundary is not None:
            if depth > 40:
                raise _Fallback("MIME structure nested too deeply")
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
            leaf = _Leaf(start, max(end, start), max(min(body_start, end), start), index, in_alternative, headers,
                         missing, before_boundary=bool(matchers), in_digest=in_digest, full_end=max(end, start))
            self.leaves.append(leaf)
            self.order.insert(slot, leaf)
            return headers
        # A leaf: everything up to the next boundary of an enclosing multipart (or the end).
        skipped = rd.skip_body(matchers)
        if skipped is not None:
            end, last_eol = skipped
        else:
            end = body_start
        full_end = max(end, start)
        if matchers and not _content_type(headers).startswith(("multipart/", "message/")):
            # The line break before a boundary belongs to the boundary (the feedparser
            # strips it after every part of a multipart, also at the end of the input).
            # Parsed in memory, the whole range is parsed and _after_subpart strips it.
            end -= last_eol
        end = max(end, start)
        leaf = _Leaf(start, end, max(min(body_start, end), start), index, in_alternative, headers, missing,
                     before_boundary=bool(matchers), in_digest=in_digest, full_end=full_end)
        self.leaves.append(leaf)
        self.order.append(leaf)
        return headers

    def container(self, headers: Message, boundary: str, matchers: list, index: str, depth: int,
                  defects: list[str]) -> bool:
        """Splits a multipart as the feedparser does; False: no start boundary (the caller
        makes it a leaf, having consumed it up to its end)."""
        rd = self.rd
        ctype = _content_type(headers)
        if str(headers.get("content-transfer-encoding", "8bit")).lower() not in ("7bit", "8bit", "binary"):
            defects.append("InvalidMultipartContentTransferEncodingDefect")
        try:
            separator = ("--" + boundary).encode("ascii", "surrogateescape")
        except UnicodeEncodeError:
            raise _Fallback("non-ASCII boundary")
        own = re.compile(re.escape(separator) + rb"(--)?[ \t]*(\r\n|\r|\n)?$").match
        while True:  # the preamble
            item = rd.readline(matchers)
            if item is None:
                return False
            mo = own(item[1])
            if mo:
                if mo.group(1):
                    self._epilogue(matchers)
                    return False
                break
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
                raise _Fallback("splitter lost its place")
            if mo.group(1):
                break
        self._epilogue(matchers)
        return True

    def _epilogue(self, matchers: list) -> None:
        while self.rd.readline(matchers) is not None:
            pass


def parse_file(path: str, *, tmpdir: str | None = None) -> ParsedMessage:
    """Parse a mail from a file with bounded memory; the same result as parse_bytes.

    The MIME tree is split by the boundaries exactly as the email package's feedparser
    splits it, without holding the mail: small leaf parts are then parsed by the email
    package like parse_bytes does, large ones are transfer-decoded from the file in chunks
    into temporary files. A mail whose structure is broken in a way the splitter does not
    reproduce is handed to parse_bytes when it is small enough (STREAM_FALLBACK_MAX), and
    split best effort otherwise. Never raises.
    """
    result = ParsedMessage()
    try:
        with open(path, "rb") as fh:
            try:
                _stream_parse(fh, result, tmpdir, strict=True)
                return result
            except _Fallback as exc:
                result.cleanup()
                size = os.fstat(fh.fileno()).st_size
                if size <= STREAM_FALLBACK_MAX:
                    fh.seek(0)
                    return parse_bytes(fh.read())
                result = ParsedMessage()
                result.problem(f"MIME structure unusual ({exc}); split best effort")
                fh.seek(0)
                _stream_parse(fh, result, tmpdir, strict=False)
    except Exception as exc:
        result.problem(f"the mail could not be fully parsed ({type(exc).__name__}); raw kept")
    return result


def _read_range(fh: BinaryIO, start: int, end: int) -> bytes:
    fh.seek(start)
    return fh.read(end - start)


def _iter_range(fh: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    pos = start
    while pos < end:
        fh.seek(pos)
        chunk = fh.read(min(_CHUNK, end - pos))
        if not chunk:
            return
        pos += len(chunk)
        yield chunk


def _stream_parse(fh: BinaryIO, result: ParsedMessage, tmpdir: str | None, *, strict: bool) -> None:
    reader = _LineReader(fh)
    splitter = _Splitter(reader, strict, result)
    top = splitter.part([], "", False, 0)
    if reader.long_line:
        splitter.anomaly("a line of more than 8 MB")
    fh.seek(0)
    head = fh.read(4096)
    linesep = "\r\n" if b"\r\n" in head else "\n"
    if reader.nul:
        result.problem("the mail contains NUL bytes (removed from the decoded text)")
    charset = _leaves_declared_charset(fh, splitter.leaves)
    _headers_into(top, result, charset=charset)
    bodies: dict[str, list[str]] = {"text": [], "html": []}
    for leaf in splitter.leaves:
        if _in_memory(leaf):
            _memory_leaf(fh, leaf, result, bodies, linesep, tmpdir)
        else:
            _big_leaf(fh, leaf, result, bodies, tmpdir, strict)
    # The defects last and in the tree's order, as parse_bytes reports them.
    for entry in splitter.order:
        for name in (entry.defects if isinstance(entry, _Leaf) else entry):
            _defect_problem(name, result)
    result.text_body = "\n".join(t for t in bodies["text"] if t)
    result.html_body = "\n".join(t for t in bodies["html"] if t)


def _in_memory(leaf: _Leaf) -> bool:
    size = leaf.end - leaf.start
    # A nested mail is re-serialised and a multipart without boundary keeps its text
    # readable, both from the email package's tree: in memory up to the fallback size.
    return size <= STREAM_LEAF_IN_MEMORY_MAX or (
        leaf.headers.get_content_maintype() in ("message", "multipart") and size <= STREAM_FALLBACK_MAX)


def _leaves_declared_charset(fh: BinaryIO, leaves: list[_Leaf]) -> str | None:
    """What _declared_charset finds on the whole mail, from the leaves (in the same order)."""
    try:
        for leaf in leaves:
            if leaf.headers.get_content_maintype() == "message" and _in_memory(leaf):
                msg = _parse_leaf(fh, leaf)
                for part in _iter_parts(msg):
                    if part.get_content_maintype() == "text":
                        charset = part.get_content_charset()
                        if charset and _codec_for(charset) not in (None, "ascii", "utf-8"):
                            return charset
                continue
            if leaf.headers.get_content_maintype() == "text":
                charset = leaf.headers.get_content_charset()
                if charset and _codec_for(charset) not in (None, "ascii", "utf-8"):
                    return charset
    except Exception:
        pass
    return None


def _parse_leaf(fh: BinaryIO, leaf: _Leaf) -> Message:
    raw = _read_range(fh, leaf.start, leaf.full_end if leaf.full_end >= 0 else leaf.end)
    msg = BytesParser(policy=policy.compat32).parsebytes(raw)
    if leaf.in_digest and msg.get("content-type") is None:
        # In a multipart/digest a part without Content-Type is a message/rfc822.
        msg.set_default_type("message/rfc822")
        body = raw[leaf.body_start - leaf.start:]
        msg.set_payload([BytesParser(policy=policy.compat32).parsebytes(body)])
    if leaf.before_boundary:
        _after_subpart(msg)
    return msg


_EOL_END = re.compile(r"(\r\n|\r|\n)\Z")


def _after_subpart(msg: Message) -> None:
    """What the feedparser does to a part of a multipart once the part is parsed: the line
    break before the next boundary is taken from the message it created last (its
    epilogue if that is a multipart, else its payload)."""
    last = msg
    while last.get_content_maintype() == "message" and isinstance(last.get_payload(), list) and last.get_payload():
        payload = last.get_payload()
        last = payload[-1] if last.get_content_type() == "message/delivery-status" else payload[0]
    if last.get_content_maintype() == "multipart":
        if last.epilogue == "":
            last.epilogue = None
        elif last.epilogue is not None:
            last.epilogue = _EOL_END.sub("", last.epilogue)
    elif isinstance(last._payload, str):
        last._payload = _EOL_END.sub("", last._payload)


def _memory_leaf(fh: BinaryIO, leaf: _Leaf, result: ParsedMessage, bodies: dict[str, list[str]],
                 linesep: str, tmpdir: str | None) -> None:
    msg = _parse_leaf(fh, leaf)
    for part in _iter_parts(msg):
        part._tenantmail_linesep = linesep  # type: ignore[attr-defined]
    before = len(result.attachments)
    try:
        _walk(msg, result, leaf.index, in_alternative=leaf.in_alternative, bodies=bodies)
    except RecursionError:
        result.problem("MIME structure nested too deeply; kept raw")
    except Exception as exc:
        result.problem(f"MIME structure unreadable ({type(exc).__name__}); kept raw")
    leaf.defects = [type(d).__name__ for part in _iter_parts(msg) for d in (getattr(part, "defects", None) or [])
                    # the feedparser adds this one to the root of a parse only (the leaf, or a
                    # digest part's message here), never to a part of a whole mail
                    if not (leaf.index and type(d).__name__ == "MultipartInvariantViolationDefect")]
    for att in result.attachments[before:]:
        if att.payload is not None and len(att.payload) >= _SPILL_MIN:
            fd, att.path = tempfile.mkstemp(prefix="tm-part-", dir=tmpdir)
            with os.fdopen(fd, "wb") as out:
                out.write(att.payload)
            att.payload = None


class _Base64Sink:
    """decode_b's result (the email package's base64 decoding) computed chunk by chunk:
    clean base64 only (anything else makes `invalid` true and is left to the email package)."""

    def __init__(self) -> None:
        self.rest = b""
        self.pads = 0
        self.invalid = False

    def feed(self, chunk: bytes) -> bytes:
        chunk = chunk.translate(None, b"\r\n")
        if not chunk or self.invalid:
            return b""
        if self.pads:  # after padding only more padding may follow (split across chunks)
            self.pads += len(chunk)
            self.rest += chunk
            if chunk.strip(b"=") or self.pads > 2:
                self.invalid = True
            return b""
        if not _B64_BODY.fullmatch(chunk):
            self.invalid = True  # non-alphabet characters or padding in the middle
            return b""
        self.pads = len(chunk) - len(chunk.rstrip(b"="))
        data = self.rest + chunk
        body = len(data) - self.pads
        usable = body - body % 4  # the padded last group waits for close()
        self.rest = data[usable:]
        try:
            return binascii.a2b_base64(data[:usable])
        except binascii.Error:
            self.invalid = True
            return b""

    def close(self) -> tuple[bytes, bool]:
        """(the last bytes, whether padding was missing)."""
        if self.invalid or not self.rest:
            return b"", False
        missing = -len(self.rest) % 4
        if self.pads + missing > 2:
            self.invalid = True
            return b"", False
        try:
            return binascii.a2b_base64(self.rest + b"=" * missing), missing > 0
        except binascii.Error:
            self.invalid = True
            return b"", False


def _big_leaf(fh: BinaryIO, leaf: _Leaf, result: ParsedMessage, bodies: dict[str, list[str]],
              tmpdir: str | None, strict: bool) -> None:
    headers, index = leaf.headers, leaf.index or "1"
    ctype = _content_type(headers)
    maintype = ctype.split("/", 1)[0]
    late = leaf.defects
    if leaf.missing_separator:
        late.append("MissingHeaderBodySeparatorDefect")
    if maintype in ("multipart", "message"):
        # multipart without a boundary (kept raw, as parse_bytes does) or a large nested mail
        # (kept as its raw body instead of re-serialised).
        if maintype == "multipart":
            result.problem(f"part {index}: {ctype} without usable boundary; kept raw")
            try:
                has_boundary = headers.get_boundary() is not None
            except Exception:
                has_boundary = False
            late.append("StartBoundaryNotFoundDefect" if has_boundary else "NoBoundaryInMultipartDefect")
        att = _file_attachment(headers, result, index, _iter_range(fh, leaf.body_start, leaf.end), tmpdir,
                               raw_kept=maintype == "multipart",
                               content_type="application/octet-stream" if maintype == "multipart" else ctype)
        result.attachments.append(att)
        return
    disposition = _disposition(headers)
    try:
        named = bool(headers.get_filename())
    except Exception:
        named = True
    is_body = ctype in ("text/plain", "text/html") and disposition != "attachment" and not named
    kind = "text" if ctype == "text/plain" else "html"
    if is_body and leaf.in_alternative and bodies[kind]:
        return  # a second alternative of the same type: the first one is the body
    cte = str(headers.get("content-transfer-encoding", "")).lower()
    chunks = _iter_range(fh, leaf.body_start, leaf.end)
    padding = False
    if cte == "base64":
        sink = _Base64Sink()

        def decoded() -> Iterator[bytes]:
            nonlocal padding
            for chunk in chunks:
                yield sink.feed(chunk)
            last, padding = sink.close()
            yield last

        data_iter: Iterator[bytes] = decoded()
    elif cte == "quoted-printable":
        def qp() -> Iterator[bytes]:
            rest = b""
            for chunk in chunks:
                chunk = rest + chunk
                cut = chunk.rfind(b"\n") + 1
                rest = chunk[cut:]
                yield quopri.decodestring(chunk[:cut])
            yield quopri.decodestring(rest)

        data_iter = qp()
    elif cte in ("x-uuencode", "uuencode", "uue", "x-uue"):
        if strict:
            raise _Fallback("large uuencoded part")
        result.problem(f"part {index}: large uuencoded part kept encoded")
        data_iter = chunks
    else:
        data_iter = chunks
    att = _file_attachment(headers, ParsedMessage(), index, data_iter, tmpdir)
    if cte == "base64" and sink.invalid:
        att.cleanup()
        if strict:
            raise _Fallback("invalid base64 in a large part")
        # Best effort: decode what is decodable and say so.
        result.problem(f"part {index}: invalid base64; decoded what could be")
        att = _file_attachment(headers, ParsedMessage(), index,
                               _lenient_b64(_iter_range(fh, leaf.body_start, leaf.end)), tmpdir)
    if padding:
        result.problem(f"part {index}: InvalidBase64PaddingDefect")
    if is_body and att.size <= _STREAM_TEXT_MAX:
        with open(att.path, "rb") as part_fh:  # type: ignore[arg-type]
            data = part_fh.read()
        att.cleanup()
        try:
            charset = headers.get_content_charset()
        except Exception:
            charset = None
        bodies[kind].append(decode_bytes(data, charset, result, where=f"part {index}: "))
        return
    if is_body:
        result.problem(f"part {index}: text body of {att.size} bytes kept as an attachment")
    # The file name and its problems, in the order parse_bytes reports them.
    named_att = _attachment(headers, b"", result, index, content_type=ctype)
    att.filename, att.inline, att.content_id = named_att.filename, named_att.inline, named_att.content_id
    result.attachments.append(att)


def _lenient_b64(chunks: Iterator[bytes]) -> Iterator[bytes]:
    rest = b""
    for chunk in chunks:
        data = rest + re.sub(rb"[^A-Za-z0-9+/]", b"", chunk)
        usable = len(data) - len(data) % 4
        rest = data[usable:]
        yield binascii.a2b_base64(data[:usable])
    if len(rest) > 1:
        yield binascii.a2b_base64(rest + b"=" * (-len(rest) % 4))


def _file_attachment(headers: Message, result: ParsedMessage, index: str, data: Iterator[bytes], tmpdir: str | None,
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
    att = _attachment(headers, b"", result, index, raw_kept=raw_kept, content_type=content_type)
    att.payload, att.path, att.size, att.sha256 = None, path, size, sha.hexdigest()
    return att


def parse_headers_only(raw_header: bytes) -> ParsedMessage:
    """Headers of a mail too large to download (oversized)."""
    result = ParsedMessage()
    try:
        msg = _parse_header_section(raw_header)
        _headers_into(msg, result)
    except Exception as exc:
        result.problem(f"headers unreadable ({type(exc).__name__})")
    return result
