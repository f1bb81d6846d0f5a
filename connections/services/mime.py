"""Checking addresses and header values, and building the MIME message of an outbox entry.

Built with the email package (EmailMessage, policy SMTP: CRLF, lines folded at 78):
- UTF-8 subjects, display names and other unstructured headers as RFC 2047 encoded words;
- attachment file names as RFC 2231 parameters (filename*=utf-8''…);
- text plus HTML as multipart/alternative, attachments around it as multipart/mixed;
- internationalised domains (user@bücher.example) in IDNA form (xn--…) on the wire, since
  without SMTPUTF8 only ASCII may appear in addresses.
"""
from __future__ import annotations

import functools
import mimetypes
import re
from dataclasses import dataclass
from datetime import datetime
from email import errors
from email import policy as email_policy
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid, parsedate_to_datetime

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator

from ..errors import ValidationError

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
_email_validator = EmailValidator()
_HEADERS = HeaderRegistry()


@dataclass(frozen=True)
class AttachmentIn:
    """An attachment handed to the outbox: its file name, bytes and (optional) MIME type."""

    name: str
    content: bytes
    content_type: str = ""

    def __repr__(self) -> str:
        return f"AttachmentIn(name={self.name!r}, {len(self.content)} bytes, {self.content_type!r})"


def _shorten(value: str, limit: int = 60) -> str:
    text = value if len(value) <= limit else value[: limit - 1] + "…"
    return repr(text)


def check_header_value(value: str, *, field: str) -> str:
    """Refuse CR, LF (header injection) and other control characters in a header value."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be text, not {type(value).__name__}.")
    if "\r" in value or "\n" in value:
        raise ValidationError(
            f"{field} contains a line break (CR or LF): {_shorten(value)}.",
            hint="header values must be one line; a line break would let the value add headers of its own",
        )
    if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in value):
        raise ValidationError(f"{field} contains a control character: {_shorten(value)}.")
    return value


def idna_domain(domain: str, *, field: str, original: str) -> str:
    """The ASCII (IDNA, xn--…) form of a domain; address literals ([127.0.0.1]) unchanged."""
    if domain.startswith("[") and domain.endswith("]"):
        return domain
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError(
            f"{field}: {_shorten(original)} has a domain that is not a valid internationalised domain name."
        ) from None


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SIMPLE_ADDRESS = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+$")


def parse_address(value: str, *, field: str) -> Address:
    """One address ("Name <user@domain>" or "user@domain"), checked, with its domain in IDNA form."""
    if isinstance(value, str) and _SIMPLE_ADDRESS.match(value):
        # A plain ASCII user@domain (the commonest case): the strict parser would take it as
        # it is; only the validator's checks remain. Same result, a tenth of the time.
        try:
            _email_validator(value)
        except DjangoValidationError:
            pass  # the full path below gives the full message
        else:
            local, _, domain = value.rpartition("@")
            return Address(username=local, domain=domain)
    if not isinstance(value, str):
        check_header_value(value, field=field)  # raises: must be text
    return _parse_address(value, field)


@functools.lru_cache(maxsize=2048)
def _parse_address(value: str, field: str) -> Address:
    """parse_address's full path; cached (Address is immutable): a bulk enqueue repeats its From."""
    check_header_value(value, field=field)
    if not value.strip():
        raise ValidationError(f"{field} contains an empty address.")
    # The strict RFC 5322 parser of the email package, not getaddresses(): that one quietly
    # repairs input (it reads "bob@exa mple.test" as bob@example.test).
    try:
        header = _HEADERS("To", value)
    except (IndexError, ValueError, TypeError, errors.HeaderParseError):  # the parser gives up
        raise ValidationError(
            f"{field}: {_shorten(value)} is not a valid e-mail address.",
            hint='write it as user@example.org or "Name <user@example.org>"',
        ) from None
    if any(isinstance(d, errors.NonASCIILocalPartDefect) for d in header.defects):
        raise ValidationError(
            f"{field}: {_shorten(value)} has non-ASCII characters before the @.",
            hint="such addresses need SMTPUTF8, which TenantMail does not use; internationalised domains are fine",
        )
    bad = [d for d in header.defects if not isinstance(d, errors.ObsoleteHeaderDefect)]
    addresses = header.addresses
    if len(addresses) > 1 or len(getaddresses([value])) > 1:
        raise ValidationError(
            f"{field}: {_shorten(value)} contains {max(len(addresses), len(getaddresses([value])))} addresses.",
            hint="give each address as its own list item",
        )
    if bad or len(addresses) != 1 or "@" not in addresses[0].addr_spec:
        raise ValidationError(
            f"{field}: {_shorten(value)} is not a valid e-mail address.",
            hint='write it as user@example.org or "Name <user@example.org>"',
        )
    display_name, addr_spec = addresses[0].display_name, addresses[0].addr_spec
    local, _, domain = addr_spec.rpartition("@")
    if not local.isascii():
        raise ValidationError(
            f"{field}: {_shorten(value)} has non-ASCII characters before the @.",
            hint="such addresses need SMTPUTF8, which TenantMail does not use; internationalised domains are fine",
        )
    ascii_domain = idna_domain(domain, field=field, original=value)
    ascii_addr = f"{local}@{ascii_domain}"
    try:
        _email_validator(ascii_addr)
    except DjangoValidationError:
        raise ValidationError(
            f"{field}: {_shorten(value)} is not a valid e-mail address.",
            hint='write it as user@example.org or "Name <user@example.org>"',
        ) from None
    try:
        return Address(display_name=display_name, addr_spec=ascii_addr)
    except (ValueError, IndexError, TypeError) as exc:  # the header parser's own objections
        raise ValidationError(f"{field}: {_shorten(value)} is not a valid e-mail address ({exc}).") from None


def parse_address_list(values: list[str] | tuple[str, ...] | str | None, *, field: str) -> list[Address]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values] if values.strip() else []
    return [parse_address(v, field=field) for v in values]


def split_addresses(values: list[str] | None) -> list[str]:
    """Address lists as people type them: items that may each hold several comma-separated
    addresses ("Doe, John" <j@x> stays one). Each piece is kept as written, for parse_address."""
    result: list[str] = []
    for value in values or []:
        if len(getaddresses([value])) <= 1:
            if value.strip():
                result.append(value.strip())
            continue
        pieces, depth, quoted, start = [], 0, False, 0
        for i, ch in enumerate(value):
            if ch == '"' and (i == 0 or value[i - 1] != "\\"):
                quoted = not quoted
            elif not quoted and ch == "<":
                depth += 1
            elif not quoted and ch == ">":
                depth -= 1
            elif not quoted and depth == 0 and ch == ",":
                pieces.append(value[start:i])
                start = i + 1
        pieces.append(value[start:])
        result.extend(p.strip() for p in pieces if p.strip())
    return result


def format_address(address: Address) -> str:
    """Display form for storing and showing: "Name <user@domain>" (Unicode kept)."""
    if address.display_name:
        return str(Address(display_name=address.display_name, addr_spec=address.addr_spec))
    return address.addr_spec


def check_extra_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """Validated extra headers: RFC 5322 names, one-line values, none that the message sets itself."""
    result: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ValidationError(
                f"Header name {_shorten(str(name))} is not valid.",
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
            raise ValidationError(f"Header Message-ID {_shorten(value)} is not of the form <id@domain>.")
        if lower == "date":
            try:
                parsedate_to_datetime(value)
            except (TypeError, ValueError):
                raise ValidationError(f"Header Date {_shorten(value)} is not an RFC 5322 date.") from None
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
        from .outbound.attributes import set_body

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
