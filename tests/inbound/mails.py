"""Small mails made for the tests."""
from __future__ import annotations

import uuid
from email.message import EmailMessage

from connections.services.inbound.fetched import FetchedMail


def make_mail(subject: str = "hello", *, body: str = "body", attachment: bytes | None = None,
              attachment_name: str = "file.bin", to: str = "user@example.test") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Sender <sender@example.test>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.test>"
    msg["Date"] = "Sat, 21 Nov 2026 08:00:00 +0000"
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename=attachment_name)
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def fetched_mail(uid: int, raw: bytes) -> FetchedMail:
    """A mail as an IMAP fetch of UID `uid` (UIDVALIDITY 7) hands it out."""
    return FetchedMail(server_key=f"imap:7:{uid}", size=len(raw), data=raw, uidvalidity=7, uid=uid)
