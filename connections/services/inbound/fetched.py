"""A mail as the server handed it out (in memory, or streamed to a spool file), and what is
done to it before its row is written: hashing, parsing (with the HTML sanitised once) and
writing its files.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import BinaryIO

from django.core.files.storage import default_storage

from ..common import spool
from ..messages import safe_html, search_words
from ..parsing.parse import parse_bytes, parse_file, parse_headers_only
from ..parsing.results import ParsedMessage
from . import files

log = logging.getLogger(__name__)


CHUNK = 1 << 20


def spool_dir() -> str:
    """Where large mails are streamed to: inside MEDIA_ROOT when storage is local, so that
    saving the finished file is a rename, not a copy."""
    location = getattr(default_storage, "location", None)
    base = os.path.join(location, ".incoming") if location else os.path.join(tempfile.gettempdir(), "tenantmail-incoming")
    os.makedirs(base, exist_ok=True)
    return base


def new_spool_file() -> tuple[BinaryIO, str]:
    fd, path = tempfile.mkstemp(prefix="mail-", suffix=".eml", dir=spool_dir())
    return os.fdopen(fd, "w+b"), path


@dataclass
class FetchedMail:
    """One mail as the server handed it out, in memory or in a spool file."""

    server_key: str
    size: int  # the size on the server
    data: bytes | None = None
    path: str | None = None
    uidvalidity: int | None = None
    uid: int | None = None
    uidl: str = ""
    msgnum: int | None = None  # POP3 message number in this session
    oversized: bool = False  # data holds only the header section
    # Filled in ahead by the fetching thread (see prepare_ahead), else by store_batch.
    sha: str | None = None
    parsed: ParsedMessage | None = None
    raw_name: str = ""
    attachment_names: list[str] = field(default_factory=list)
    write_error: str = ""

    def prepare_ahead(self, *, parse: bool, write: bool = True) -> None:
        """Hash, parse and write the files now (no database): the poller does this in the
        thread that fetched the next batch while the previous batch's rows are inserted —
        creating files and inserting rows wait on different things. Never raises."""
        try:
            if self.sha is None:
                self.sha = self.sha256()
            if parse and self.parsed is None:
                self.parsed = parse_mail(self)
            if write:
                self.raw_name = files.save_raw(self)
                if self.parsed is not None:
                    for att in self.parsed.attachments:
                        self.attachment_names.append(files.save_attachment(att))
        except Exception as exc:
            log.exception("could not prepare mail %s", self.server_key)
            self.write_error = f"{self.server_key}: cannot write to storage: {type(exc).__name__}: {exc}"
        finally:
            if self.parsed is not None:
                self.parsed.cleanup()

    def sha256(self) -> str:
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        digest = hashlib.sha256()
        with open(self.path, "rb") as fh:  # type: ignore[arg-type]
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()

    @property
    def stored_size(self) -> int:
        if self.data is not None:
            return len(self.data)
        if self.path:
            return os.path.getsize(self.path)
        return self._moved_size

    _moved_size: int = 0

    def cleanup(self) -> None:
        spool.remove(self.path)
        self.path = None


def parse_mail(mail: FetchedMail) -> ParsedMessage:
    """Parse the mail and sanitise its HTML body once (bounded cost: services.messages.safe_html)."""
    parsed = _parse_mail(mail)
    safe_html.prepare_into(parsed)
    search_words.prepare_into(parsed)
    return parsed


def _parse_mail(mail: FetchedMail) -> ParsedMessage:
    if mail.oversized:
        parsed = parse_headers_only(mail.data or b"")
        parsed.problem(f"oversized: {mail.size} bytes on the server; only the headers were downloaded")
        return parsed
    if mail.data is not None:
        return parse_bytes(mail.data)
    return parse_file(mail.path, tmpdir=spool_dir())  # type: ignore[arg-type]
