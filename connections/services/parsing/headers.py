"""The one header decoder of a mail being parsed: raw header values (8-bit bytes, RFC 2047
encoded words, folding, broken address and date syntax) to the text stored — subject,
addresses, date and message id. Never raises: what its parser refuses is decoded by hand.

(services.messages has a second, narrower decoder for RFC 2047 words left in text that is
already stored; this one reads headers off the wire.)
"""
from __future__ import annotations

import contextvars
import email.header
import email.utils
import re
from datetime import datetime, timezone as dt_timezone
from email import policy
from email.message import Message

from .charsets import clean_text, decode_bytes
from .results import ParsedMessage

MAX_HEADER_CHARS = 20_000

_HEADER_FIELDS = {
    "message_id": "Message-ID",
    "from_header": "From",
    "to_header": "To",
    "cc_header": "Cc",
    "reply_to_header": "Reply-To",
    "subject": "Subject",
}

# The charset the mail declares for its text, set per parse (thread/task safe).
HEADER_CHARSET: contextvars.ContextVar[str | None] = contextvars.ContextVar("header_charset", default=None)


def surrogates_to_text(value: str, charset: str | None = None) -> str:
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
            return clean_text(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return decode_bytes(raw, charset or HEADER_CHARSET.get() or "cp1252")


def decode_raw_header_value(value: str) -> str:
    """Decode RFC 2047 encoded words by hand (the fallback when policy.default fails)."""
    value = surrogates_to_text(str(value))
    if "=?" not in value:
        return clean_text(" ".join(value.split()) if "\n" in value or "\r" in value else value)
    try:
        pieces = email.header.decode_header(value)
    except Exception:
        return clean_text(value)
    out: list[str] = []
    for chunk, charset in pieces:
        if isinstance(chunk, bytes):
            out.append(decode_bytes(chunk, charset or "utf-8"))
        else:
            out.append(chunk)
    # decode_header keeps the whitespace between plain and encoded words inconsistently.
    text = "".join(out) if len(pieces) > 1 else out[0] if out else ""
    return clean_text(" ".join(text.split()))


_LINESEP = re.compile(r"\r|\n")
_FACTORY = policy.default.header_factory


def raw_values(msg: Message, name: str) -> list[str]:
    """The header's raw values (undecoded; 8-bit bytes as surrogates), unfolded."""
    # Indexed once per message: a mail's headers are looked up a dozen times while parsing
    # (and never change meanwhile).
    index = msg.__dict__.get("_tenantmail_headers")
    if index is None or index[0] != len(msg):
        values: dict[str, list[str]] = {}
        for key, value in msg.raw_items():
            values.setdefault(key.lower(), []).append(_LINESEP.sub("", str(value)))
        index = msg.__dict__["_tenantmail_headers"] = (len(msg), values)
    return list(index[1].get(name.lower(), ()))


def header(msg: Message, name: str, result: ParsedMessage) -> str:
    """One header, decoded; never raises (broken headers fall back to a raw decode).

    The mail is parsed with the fast compat32 policy; only these few headers go through
    policy.default's header parser (RFC 2047, address syntax).
    """
    values = raw_values(msg, name)
    if not values:
        return ""
    if name.lower() not in ("to", "cc"):
        values = values[:1]
    simple = [simple_header(name, v) for v in values]
    if all(v is not None for v in simple):
        return ", ".join(simple)[:MAX_HEADER_CHARS]  # type: ignore[arg-type]
    try:
        text = ", ".join(str(_FACTORY(name, v)) for v in values)
    except Exception as exc:  # broken address headers raise on parse
        result.problem(f"header {name}: {type(exc).__name__}; raw value decoded instead")
        text = ", ".join(decode_raw_header_value(v) for v in values)
    if "=?" in text:  # encoded words the header parser left alone (e.g. inside quotes)
        text = decode_raw_header_value(text)
    if "\ufffd" in text or "\x1b" in text:
        # policy.default replaced raw 8-bit bytes or failed on a charset it does not know
        # (iso-8859-8-i, CP50220 ISO-2022-JP, GBK labelled gb2312): decode the raw value.
        again = ", ".join(decode_raw_header_value(v) for v in values)
        if again.count("\ufffd") < text.count("\ufffd") or "\x1b" in text:
            text = again
    return clean_text(surrogates_to_text(text))[:MAX_HEADER_CHARS]


_PLAIN_TEXT = re.compile(r"[\x20-\x7e\t]*")
_SIMPLE_ADDR = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")
_SIMPLE_NAME = re.compile(r"[A-Za-z0-9 !#$%&'*+/=?^_`{|}~.-]*")
_NAME_SPECIALS = set('()<>@,:;."[]\\')
_ADDRESS_HEADERS = {"from", "to", "cc", "reply-to", "sender", "bcc"}


def simple_header(name: str, value: str) -> str | None:
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


def raw_header(msg: Message, name: str) -> str:
    values = raw_values(msg, name)
    return values[0] if values else ""


def _date(msg: Message, result: ParsedMessage) -> datetime | None:
    raw = raw_header(msg, "Date")
    if not raw.strip():
        return None
    try:
        # What policy.default's DateHeader does, without building the header object.
        value = email.utils.parsedate_to_datetime(surrogates_to_text(raw).strip())
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
    value = header(msg, "Message-ID", result).strip()
    return value[:998]


# --------------------------------------------------------------------------- parts



def headers_into(msg: Message, result: ParsedMessage, *, charset: str | None) -> None:
    """Subject, addresses, date and message id of `msg` into `result`; `charset` is the one
    raw 8-bit header bytes are read in when they are not UTF-8 (the mail's first declared
    text charset, walk.declared_charset)."""
    HEADER_CHARSET.set(charset)
    for attr, name in _HEADER_FIELDS.items():
        if attr == "message_id":
            result.message_id = _message_id(msg, result)
        else:
            setattr(result, attr, header(msg, name, result))
    result.date = _date(msg, result)
