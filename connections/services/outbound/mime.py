"""Checking header values and attachments, and building the MIME message of an outbox entry
(addresses: addresses.py; the fast path for plain ASCII text: fastmime.py).

Built with the email package (EmailMessage, policy SMTP: CRLF, lines folded at 78):
- UTF-8 subjects, display names and other unstructured headers as RFC 2047 encoded words;
- attachment file names as RFC 2231 parameters (filename*=utf-8''…);
- text plus HTML as multipart/alternative, attachments around it as multipart/mixed;
"""
from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from datetime import datetime
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parsedate_to_datetime

from ...errors import ValidationError

POLICY = email_policy.SMTP

# Headers that the message's own fields set; extra_headers may not set them behind their back.
RESERVED_HEADERS = frozenset(
    {
        "from", "sender", "to", "cc", "bcc", "reply-to", "subject", "mime-version",
        "content-type", "content-transfer-encoding", "content-disposition", "content-id",
        "return-path", "received",
    }
)
# Headers that extra_headers may override (validated).
OVERRIDABLE_HEADERS = frozenset({"message-id", "date"})

_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 ftext: printable ASCII except ":"
_MESSAGE_ID = re.compile(r"^<[^<>\s@]+@[^<>\s@]+>$")
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")


@dataclass(frozen=True)
class AttachmentIn:
    """An attachment handed to the outbox: its file name, bytes and (optional) MIME type."""

    name: str
    content: bytes
    content_type: str = ""

    def __repr__(self) -> str:
        return f"AttachmentIn(name={self.name!r}, {len(self.content)} bytes, {self.content_type!r})"


def shorten(value: str, limit: int = 60) -> str:
    text = value if len(value) <= limit else value[: limit - 1] + "…"
    return repr(text)


def check_header_value(value: str, *, field: str) -> str:
    """Refuse CR, LF (header injection) and other control characters in a header value."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be text, not {type(value).__name__}.")
    if "\r" in value or "\n" in value:
        raise ValidationError(
            f"{field} contains a line break (CR or LF): {shorten(value)}.",
            hint="header values must be one line; a line break would let the value add headers of its own",
        )
    if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in value):
        raise ValidationError(f"{field} contains a control character: {shorten(value)}.")
    return value


def check_extra_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """Validated extra headers: RFC 5322 names, one-line values, none that the message sets itself."""
    result: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ValidationError(
                f"Header name {shorten(str(name))} is not valid.",
                hint="header names are printable ASCII without spaces or ':'",
            )
        lower = name.lower()
        if lower in seen:
            raise ValidationError(f"Header {name} is given twice.")
        seen.add(lower)
        if lower in RESERVED_HEADERS:
            raise ValidationError(
                f"Header {name} cannot be set as an extra header.",
                hint="use the message's own fields (from, to, cc, bcc, reply_to, subject, attachments)",
            )
        value = check_header_value(str(value), field=f"Header {name}")
        if lower == "message-id" and not _MESSAGE_ID.match(value.strip()):
            raise ValidationError(f"Header Message-ID {shorten(value)} is not of the form <id@domain>.")
        if lower == "date":
            try:
                parsedate_to_datetime(value)
            except (TypeError, ValueError):
                raise ValidationError(f"Header Date {shorten(value)} is not an RFC 5322 date.") from None
        result[name] = value
    return result


def check_attachment(att: AttachmentIn, *, index: int) -> tuple[str, str, str]:
    """(name, maintype, subtype) of a valid attachment."""
    label = f"Attachment {index}"
    if not isinstance(att.content, (bytes, bytearray, memoryview)):
        raise ValidationError(f"{label} ({att.name!r}): content must be bytes.")
    name = check_header_value(att.name or "", field=f"{label} file name").strip()
    if not name:
        raise ValidationError(f"{label} has no file name.")
    if "/" in name or "\\" in name:
        name = re.split(r"[\\/]", name)[-1]
        if not name:
            raise ValidationError(f"{label} has no file name.")
    ctype = (att.content_type or "").strip().lower()
    if not ctype:
        ctype = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
    ctype = ctype.split(";", 1)[0].strip()
    if not _CONTENT_TYPE.match(ctype):
        raise ValidationError(f"{label} ({name!r}): content type {ctype!r} is not of the form type/subtype.")
    maintype, subtype = ctype.split("/", 1)
    if maintype == "multipart":
        raise ValidationError(f"{label} ({name!r}): a multipart content type cannot be attached as a file.")
    if maintype == "message":
        # message/* parts may not be base64-encoded (RFC 2046), and any other encoding could
        # change the bytes: send it as a plain file, byte for byte.
        maintype, subtype = "application", "octet-stream"
    return name, maintype, subtype


def new_message_id(from_address: Address) -> str:
    domain = from_address.domain if from_address.domain and not from_address.domain.startswith("[") else None
    return make_msgid(domain=domain or "tenantmail.invalid")


def build_message(
    *,
    from_address: Address,
    to: list[Address],
    cc: list[Address],
    reply_to: list[Address],
    subject: str,
    text: str,
    html: str,
    attachments: list[AttachmentIn],
    extra_headers: dict[str, str],
    message_id: str,
    date: datetime,
    body_options=None,
) -> EmailMessage:
    """The MIME message (Bcc is not a header: Bcc recipients are only in the envelope)."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = from_address
    if to:
        msg["To"] = to
    if cc:
        msg["Cc"] = cc
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    for name, value in extra_headers.items():
        if name.lower() in OVERRIDABLE_HEADERS:
            continue  # already applied through message_id / date
        msg[name] = value

    if body_options is not None and not body_options.automatic:
        # The connection's body type, charset and transfer encoding (receiver attributes).
        from .attributes import set_body

        set_body(msg, text=text, html=html, options=body_options)
    elif html and text:
        msg.set_content(text, subtype="plain", charset="utf-8", cte=_text_cte(text))
        msg.add_alternative(html, subtype="html", charset="utf-8", cte=_text_cte(html))
    elif html:
        msg.set_content(html, subtype="html", charset="utf-8", cte=_text_cte(html))
    else:
        msg.set_content(text, subtype="plain", charset="utf-8", cte=_text_cte(text))

    for index, att in enumerate(attachments, start=1):
        name, maintype, subtype = check_attachment(att, index=index)
        # Bytes, also for text/*: the receiver gets the file exactly as given (base64).
        msg.add_attachment(bytes(att.content), maintype=maintype, subtype=subtype, filename=name)
    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]  # only the top level carries it
    return msg


def _text_cte(body: str) -> str | None:
    """7bit when possible, else quoted-printable: never 8bit, which needs the server's 8BITMIME."""
    if body.isascii() and all(len(line) <= 998 for line in body.splitlines()):
        return None  # the email package picks 7bit
    return "quoted-printable"


def to_bytes(msg: EmailMessage) -> bytes:
    return msg.as_bytes(policy=POLICY)
