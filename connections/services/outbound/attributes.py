"""Receiver attributes of an outbound connection (SAP's mail receiver adapter, issue 19):
defaults for To, Cc, Bcc and Subject used when a message gives none, and how the body goes
on the wire — its MIME type, charset and Content-Transfer-Encoding.

YAML (contract names, on an outbound connection): `to`, `cc`, `bcc`, `subject`, `body_type`,
`body_charset`, `transfer_encoding`.
"""
from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

from ...errors import ValidationError
from ...models import BodyCharset, BodyType, OutboundConnection, TransferEncoding
from .addresses import split_addresses

__all__ = ["BodyOptions", "defaults", "body_options", "set_body", "YAML_KEYS"]

# YAML key -> model field (the contract names of issue 19)
YAML_KEYS = {
    "to": "default_to", "cc": "default_cc", "bcc": "default_bcc", "subject": "default_subject",
    "body_type": "body_type", "body_charset": "body_charset", "transfer_encoding": "transfer_encoding",
}


@dataclass(frozen=True)
class BodyOptions:
    body_type: str = ""  # "" = automatic: text/plain, text/html or both (multipart/alternative)
    charset: str = BodyCharset.UTF8
    cte: str = TransferEncoding.AUTO

    @property
    def automatic(self) -> bool:
        return not self.body_type and self.charset == BodyCharset.UTF8 and self.cte == TransferEncoding.AUTO


def defaults(connection: OutboundConnection, *, to, cc, bcc, subject: str) -> tuple[list, list, list, str]:
    """The message's To/Cc/Bcc, or the connection's defaults when it names no recipient at
    all; its Subject, or the connection's default Subject when it has none."""
    to, cc, bcc = _listed(to), _listed(cc), _listed(bcc)
    if not (to or cc or bcc):
        to = split_addresses([connection.default_to]) if connection.default_to.strip() else []
        cc = split_addresses([connection.default_cc]) if connection.default_cc.strip() else []
        bcc = split_addresses([connection.default_bcc]) if connection.default_bcc.strip() else []
    if not (subject or "").strip() and connection.default_subject:
        subject = connection.default_subject
    return to, cc, bcc, subject


def _listed(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    return list(value)


def body_options(connection: OutboundConnection) -> BodyOptions:
    return BodyOptions(connection.body_type or "", connection.body_charset or BodyCharset.UTF8,
                       connection.transfer_encoding or TransferEncoding.AUTO)


def check(options: BodyOptions) -> None:
    """Refuse values outside the choices (YAML and API input)."""
    if options.body_type not in BodyType.values:
        raise ValidationError(f"body_type {options.body_type!r} is not one of: "
                              + ", ".join(v or "(empty: automatic)" for v in BodyType.values) + ".")
    if options.charset not in BodyCharset.values:
        raise ValidationError(f"body_charset {options.charset!r} is not one of: {', '.join(BodyCharset.values)}.")
    if options.cte not in TransferEncoding.values:
        raise ValidationError(f"transfer_encoding {options.cte!r} is not one of: "
                              f"{', '.join(TransferEncoding.values)}.")


def set_body(msg: EmailMessage, *, text: str, html: str, options: BodyOptions) -> None:
    """Set the body of `msg` per the connection's body type, charset and transfer encoding."""
    body_type = options.body_type
    if body_type in ("", BodyType.PLAIN):
        if html and text:
            _text_part(msg, text, "plain", options)
            _text_part(msg, html, "html", options, alternative=True)
        elif html and not body_type:
            _text_part(msg, html, "html", options)
        else:
            _text_part(msg, text, "plain", options)
        return
    if body_type == BodyType.HTML:
        _text_part(msg, html or text, "html", options)
        return
    if html:
        raise ValidationError(f"The connection sends bodies as {body_type}: give the body as text, not HTML.")
    maintype, subtype = body_type.split("/")
    if maintype == "text":
        _text_part(msg, text, subtype, options)
        return
    data = _encode(text, options.charset)
    cte = options.cte
    if cte == TransferEncoding.AUTO:
        cte = "7bit" if _fits_7bit(data) else "base64"
    params = {} if body_type == BodyType.OCTET else {"charset": options.charset}
    _checked_7bit(data, cte)
    msg.set_content(data, maintype=maintype, subtype=subtype, cte=cte, params=params)


def _text_part(msg: EmailMessage, body: str, subtype: str, options: BodyOptions, *, alternative: bool = False) -> None:
    data = _encode(body, options.charset)  # refuses what the charset cannot hold
    cte = options.cte
    if cte == TransferEncoding.AUTO:
        # 7bit when possible, else quoted-printable: never 8bit, which needs the server's 8BITMIME.
        cte = None if _fits_7bit(data) else "quoted-printable"
    else:
        _checked_7bit(data, cte)
    if alternative:
        msg.add_alternative(body, subtype=subtype, charset=options.charset, cte=cte)
    else:
        msg.set_content(body, subtype=subtype, charset=options.charset, cte=cte)


def _encode(text: str, charset: str) -> bytes:
    try:
        return text.encode(charset)
    except UnicodeEncodeError as exc:
        bad = text[exc.start:exc.end]
        raise ValidationError(
            f"The body has characters that {charset} cannot hold: {bad!r} at position {exc.start}.",
            hint="choose UTF-8 as the connection's body charset, or remove those characters",
        ) from None


def _fits_7bit(data: bytes) -> bool:
    return data.isascii() and all(len(line) <= 998 for line in data.splitlines())


def _checked_7bit(data: bytes, cte: str) -> None:
    if cte == TransferEncoding.SEVENBIT and not _fits_7bit(data):
        raise ValidationError(
            "The body cannot be sent as 7bit: it has non-ASCII bytes or lines over 998 characters.",
            hint="choose quoted-printable, base64 or automatic as the connection's transfer encoding",
        )
