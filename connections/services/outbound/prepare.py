"""Checking a message and building its MIME bytes, once, before anything is stored.

Every check runs first (addresses, header values, From, size against the server's SIZE) and a
failing one raises ValidationError with nothing stored. The MIME message is built here, once:
what was checked is exactly what goes on the wire, and a retry sends the same bytes with the
same Message-ID (so a receiver can recognise a duplicate from the at-least-once window).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.utils import parsedate_to_datetime
from typing import Iterable, Sequence

from django.utils import timezone

from ...errors import ValidationError
from ...models import OutboundConnection
from . import addresses, attributes, fastmime, mime
from .mime import AttachmentIn


@dataclass
class PreparedMessage:
    """A checked message with its MIME bytes, not yet stored."""

    connection: OutboundConnection
    from_address: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    reply_to: str
    subject: str
    text: str
    html: str
    extra_headers: dict[str, str]
    attachments: list[tuple[str, str, bytes]]  # (name, content type, bytes)
    priority: int
    send_after: datetime | None
    message_id: str
    envelope_from: str
    envelope_to: list[str]
    mime: bytes

    def __repr__(self) -> str:
        return f"PreparedMessage({self.message_id}, {len(self.mime)} bytes, to {len(self.envelope_to)})"


@dataclass
class _Addresses:
    sender: Address
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    reply_to: list[Address]


def prepare(
    *,
    connection_id: int,
    to: Sequence[str] = (),
    subject: str = "",
    text: str = "",
    html: str = "",
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    reply_to: Sequence[str] | str | None = None,
    from_address: str | None = None,
    attachments: Iterable[AttachmentIn] = (),
    extra_headers: dict[str, str] | None = None,
    priority: int = 0,
    send_after: datetime | None = None,
    connection: OutboundConnection | None = None,
) -> PreparedMessage:
    """Check a message and build its MIME bytes; raises ValidationError, stores nothing.

    `connection`, when given (the same one as connection_id), saves loading it: enqueue_many.
    """
    if connection is None or connection.pk != connection_id:
        try:
            connection = OutboundConnection.objects.select_related("tenant").get(pk=connection_id)
        except OutboundConnection.DoesNotExist:
            raise ValidationError(f"No outbound connection #{connection_id}.") from None
    # The connection's receiver attributes: default To/Cc/Bcc and Subject.
    to, cc, bcc, subject = attributes.defaults(connection, to=to, cc=cc, bcc=bcc, subject=subject)
    addrs = _check_addresses(connection, from_address=from_address, to=to, cc=cc, bcc=bcc, reply_to=reply_to)
    subject = mime.check_header_value(subject or "", field="Subject")
    if not isinstance(text, str) or not isinstance(html, str):
        raise ValidationError("The text and HTML bodies must be text.")
    headers = mime.check_extra_headers(extra_headers)
    send_after = _check_schedule(priority, send_after)
    checked_atts: list[tuple[str, str, bytes]] = []
    for index, att in enumerate(list(attachments), start=1):
        name, maintype, subtype = mime.check_attachment(att, index=index)
        checked_atts.append((name, f"{maintype}/{subtype}", bytes(att.content)))

    lowered = {k.lower(): v for k, v in headers.items()}
    message_id = lowered.get("message-id", "").strip() or mime.new_message_id(addrs.sender)
    date = parsedate_to_datetime(lowered["date"]) if "date" in lowered else timezone.now()
    raw = _build(connection, addrs, subject=subject, text=text, html=html, attachments=checked_atts,
                 headers=headers, message_id=message_id, date=date)
    _check_size(connection, len(raw))
    reply_text = ", ".join(addresses.format_address(a) for a in addrs.reply_to)
    for label, value in (("From", addresses.format_address(addrs.sender)), ("Reply-To", reply_text),
                         ("Message-ID", message_id)):
        if len(value) > 998:
            raise ValidationError(f"{label} is longer than 998 characters.")
    return PreparedMessage(
        connection=connection,
        from_address=addresses.format_address(addrs.sender),
        to=[addresses.format_address(a) for a in addrs.to],
        cc=[addresses.format_address(a) for a in addrs.cc],
        bcc=[addresses.format_address(a) for a in addrs.bcc],
        reply_to=reply_text,
        subject=subject, text=text, html=html, extra_headers=headers,
        attachments=checked_atts, priority=priority, send_after=send_after,
        message_id=message_id, envelope_from=addrs.sender.addr_spec, envelope_to=_envelope(addrs), mime=raw,
    )


def _check_addresses(connection: OutboundConnection, *, from_address, to, cc, bcc, reply_to) -> _Addresses:
    sender_text = (from_address or "").strip() or connection.default_from.strip()
    if not sender_text:
        raise ValidationError(
            "The message has no From address and the connection has no default From.",
            hint=f"pass from_address, or set the default From of connection '{connection.name}'",
        )
    sender = addresses.parse_address(sender_text, field="From")
    to_list = addresses.parse_address_list(list(to) if not isinstance(to, str) else to, field="To")
    cc_list = addresses.parse_address_list(list(cc) if not isinstance(cc, str) else cc, field="Cc")
    bcc_list = addresses.parse_address_list(list(bcc) if not isinstance(bcc, str) else bcc, field="Bcc")
    if reply_to is None:
        reply_to = [connection.default_reply_to] if connection.default_reply_to.strip() else []
    reply_list = addresses.parse_address_list(reply_to, field="Reply-To")
    if not (to_list or cc_list or bcc_list):
        raise ValidationError("The message has no recipient.", hint="give at least one To, Cc or Bcc address")
    return _Addresses(sender, to_list, cc_list, bcc_list, reply_list)


def _check_schedule(priority, send_after: datetime | None) -> datetime | None:
    if not isinstance(priority, int) or not -32768 <= priority <= 32767:
        raise ValidationError(f"Priority {priority!r} is not a whole number between -32768 and 32767.")
    if send_after is not None:
        if not isinstance(send_after, datetime):
            raise ValidationError("send_after must be a date and time.")
        if timezone.is_naive(send_after):
            send_after = timezone.make_aware(send_after)
    return send_after


def _build(connection: OutboundConnection, addrs: _Addresses, *, subject: str, text: str, html: str,
           attachments: list[tuple[str, str, bytes]], headers: dict[str, str], message_id: str,
           date: datetime) -> bytes:
    """The MIME bytes: the commonest message (ASCII text/plain) written directly, anything
    else by the email package."""
    body_options = attributes.body_options(connection)
    raw = fastmime.build_simple(
        from_address=addrs.sender, to=addrs.to, cc=addrs.cc, reply_to=addrs.reply_to, subject=subject,
        text=text, html=html, attachments=attachments, extra_headers=headers, message_id=message_id, date=date,
        automatic_body=body_options.automatic, overridable=mime.OVERRIDABLE_HEADERS,
    )
    if raw is not None:
        return raw
    msg = mime.build_message(
        from_address=addrs.sender, to=addrs.to, cc=addrs.cc, reply_to=addrs.reply_to, subject=subject,
        text=text, html=html, attachments=[AttachmentIn(n, c, t) for n, t, c in attachments],
        extra_headers=headers, message_id=message_id, date=date, body_options=body_options,
    )
    try:
        return mime.to_bytes(msg)
    except (ValueError, TypeError, UnicodeError) as exc:  # the email package's last word
        raise ValidationError(f"The message cannot be encoded: {exc}.") from None


def _check_size(connection: OutboundConnection, size: int) -> None:
    limit = known_size_limit(connection)
    if limit and size > limit:
        raise ValidationError(
            f"The message is {human_size(size)} with its attachments encoded; the server of "
            f"connection '{connection.name}' accepts at most {human_size(limit)} (SIZE {limit}).",
            hint="send smaller or fewer attachments, e.g. a link to the file instead",
        )


def _envelope(addrs: _Addresses) -> list[str]:
    """Every To, Cc and Bcc address once, in order (case-insensitive domain)."""
    envelope: list[str] = []
    seen: set[str] = set()
    for address in (*addrs.to, *addrs.cc, *addrs.bcc):
        key = f"{address.username}@{address.domain.lower()}"
        if key not in seen:
            seen.add(key)
            envelope.append(address.addr_spec)
    return envelope


def known_size_limit(connection: OutboundConnection) -> int | None:
    """The server's SIZE: from the last SMTP session, else from the last connectivity test."""
    if connection.smtp_max_size:
        return connection.smtp_max_size
    report = connection.last_test_report or {}
    for step in report.get("steps") or []:
        if isinstance(step, dict) and step.get("name") == "capabilities" and step.get("ok"):
            size = ((step.get("detail") or {}).get("features") or {}).get("size")
            if isinstance(size, int) and size > 0:
                return size
    return None


def human_size(size: int) -> str:
    """Bytes as people read them: 512 bytes, 1.5 KB, 2.0 MB."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size} bytes"
