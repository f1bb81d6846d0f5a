"""What a parse gives: ParsedMessage (headers, bodies, attachments, problems) and ParsedAttachment."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

from ..common import spool
from .charsets import clean_text

MAX_PROBLEMS = 50


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
        spool.remove(self.path)
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
    safe_html: str | None = None  # html_body sanitised (services.messages.safe_html), set by storage
    search_words: str | None = None  # the body's search words (services.messages.search_words), set by storage
    attachments: list[ParsedAttachment] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS and text not in self.problems:
            self.problems.append(clean_text(text)[:500])

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
