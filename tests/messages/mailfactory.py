"""Turn raw mails into StoredMessage rows for the tests, with the file in default_storage.

The inbound engineer's parser owns real parsing; this is a minimal, tolerant parse
with Python's email package so that these tests do not depend on it.
"""
from __future__ import annotations

import email
import email.policy
import hashlib
import itertools
from email.message import EmailMessage, Message

from django.core.files.base import ContentFile
from django.utils import timezone

from connections.models import Attachment, InboundConnection, StoredMessage

_counter = itertools.count(1)


def _decode(part: Message, problems: list[str]) -> str:
    payload = part.get_payload(decode=True) or b""
    charset = (part.get_content_charset() or "us-ascii").lower()
    for candidate in (charset, charset.removeprefix("x-"), "cp1252"):
        try:
            return payload.decode(candidate, errors="strict")
        except LookupError:
            problems.append(f"unknown charset {charset}")
        except UnicodeDecodeError:
            problems.append(f"bytes not valid in {candidate}")
    return payload.decode("latin-1")


def _header(msg: Message, name: str, problems: list[str]) -> str:
    try:
        value = msg.get(name)
        return str(value) if value is not None else ""
    except Exception as exc:  # broken headers raise many things in the email package
        problems.append(f"{name}: {exc.__class__.__name__}")
        raw = msg._headers and [v for k, v in msg._headers if k.lower() == name.lower()]  # type: ignore[attr-defined]
        return str(raw[0]) if raw else ""


def parse(raw: bytes) -> dict:
    """Fields of a StoredMessage plus a list of attachment dicts.

    Uses the inbound parser (connections.services.parsing.parse) when it is there, so the
    pages are tested with what polls really store; else a minimal parse.
    """
    try:
        from connections.services.parsing.parse import parse_bytes
    except ImportError:
        return _minimal_parse(raw)
    parsed = parse_bytes(raw)
    fields = dict(parsed.header_fields())
    fields.update(text_body=parsed.text_body, html_body=parsed.html_body,
                  parse_problems=list(parsed.problems), parsed=True)
    attachments = []
    for att in parsed.attachments:
        with att.open() as fh:
            data = fh.read()
        attachments.append({"filename": att.filename, "content_type": att.content_type,
                            "content_id": att.content_id, "inline": att.inline, "data": data})
    parsed.cleanup()
    return {"fields": fields, "attachments": attachments}


def _minimal_parse(raw: bytes) -> dict:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    problems: list[str] = []
    text, html, attachments = [], [], []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
        filename = None
        try:
            filename = part.get_filename()
        except Exception:
            problems.append("unreadable file name")
        if ctype == "text/plain" and disposition != "attachment" and not filename:
            text.append(_decode(part, problems))
        elif ctype == "text/html" and disposition != "attachment" and not filename:
            html.append(_decode(part, problems))
        else:
            attachments.append({
                "filename": filename or "",
                "content_type": ctype,
                "content_id": (part.get("Content-ID") or "").strip(),
                "inline": disposition == "inline",
                "data": part.get_payload(decode=True) or b"",
            })
    date = None
    try:
        date = msg["Date"].datetime if msg["Date"] is not None else None
        if date is not None and timezone.is_naive(date):
            date = timezone.make_aware(date, timezone.utc)
    except Exception:
        problems.append("unreadable Date")
    return {
        "fields": {
            "from_header": _header(msg, "From", problems),
            "to_header": _header(msg, "To", problems),
            "cc_header": _header(msg, "Cc", problems),
            "subject": _header(msg, "Subject", problems),
            "message_id": _header(msg, "Message-ID", problems)[:998],
            "date": date,
            "text_body": "\n".join(text),
            "html_body": "\n".join(html),
            "parse_problems": problems,
            "parsed": True,
        },
        "attachments": attachments,
    }


def store(*, connection: InboundConnection, raw: bytes, **overrides) -> StoredMessage:
    """Parse `raw` and store it as the given connection's message (file in default_storage)."""
    parsed = parse(raw)
    n = next(_counter)
    fields = {**parsed["fields"], **overrides}
    message = StoredMessage(
        tenant_id=connection.tenant_id,
        connection=connection,
        server_key=f"imap:1:{n}",
        uidvalidity=1,
        uid=n,
        size=len(raw),
        fetched_at=overrides.pop("fetched_at", None) or timezone.now(),
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        has_attachments=bool(parsed["attachments"]),
        **{k: v for k, v in fields.items() if k != "fetched_at"},
    )
    message.raw.save(f"msg-{n}.eml", ContentFile(raw), save=False)
    message.save()
    for att in parsed["attachments"]:
        row = Attachment(
            tenant_id=connection.tenant_id,
            message=message,
            filename=att["filename"][:255],
            content_type=att["content_type"],
            size=len(att["data"]),
            sha256=hashlib.sha256(att["data"]).hexdigest(),
            inline=att["inline"],
            content_id=att["content_id"][:255],
        )
        row.file.save(f"att-{n}", ContentFile(att["data"]), save=False)
        row.save()
    return message


def build(*, subject: str = "Hello", sender: str = "Alice <alice@example.com>", text: str | None = "Hi there",
          html: str | None = None, attachments: list[tuple[str, str, bytes]] = (),
          inline: list[tuple[str, str, bytes]] = (), headers: dict | None = None) -> bytes:
    """A raw mail. attachments: (filename, content type, data); inline: (content id, type, data)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "bob@example.com"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 03 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = f"<{next(_counter)}@test.example>"
    for k, v in (headers or {}).items():
        msg[k] = v
    if text is not None:
        msg.set_content(text)
    if html is not None:
        if text is None:
            msg.set_content(html, subtype="html")
        else:
            msg.add_alternative(html, subtype="html")
    if inline:
        html_part = msg.get_body(("html",))
        for cid, ctype, data in inline:
            maintype, subtype = ctype.split("/")
            html_part.add_related(data, maintype=maintype, subtype=subtype, cid=f"<{cid}>")
    for filename, ctype, data in attachments:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()
