"""A stored message's files: which attachments a browser may show inline (and under which
content type), and the download's file name and Content-Disposition."""
from __future__ import annotations

import re
import unicodedata
from typing import Callable, Iterable
from urllib.parse import quote

from ...models import Attachment
from ..parsing.attachments import safe_filename
from .sanitize import normalise_content_id

# Raster types a browser may show inline; everything else is only ever downloaded.
INLINE_IMAGE_TYPES = {"image/png", "image/gif", "image/jpeg", "image/pjpeg", "image/webp", "image/bmp", "image/avif",
                      "image/jpg", "image/x-png"}
# Common misspellings from mail programs, served under their registered names.
_IMAGE_TYPE_NAMES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}


def inline_url_map(*, attachments: Iterable[Attachment], url_for: Callable[[Attachment], str]) -> dict[str, str]:
    """Normalised Content-ID -> URL, for the attachments a browser may show inline."""
    result: dict[str, str] = {}
    for att in attachments:
        if att.content_id and is_inline_image(att):
            result.setdefault(normalise_content_id(att.content_id), url_for(att))
    return result


def is_inline_image(attachment: Attachment) -> bool:
    return attachment.content_type.split(";")[0].strip().lower() in INLINE_IMAGE_TYPES


def inline_content_type(attachment: Attachment) -> str:
    """The registered type of an inline image ("image/jpg" → "image/jpeg")."""
    value = stored_content_type(attachment)
    return _IMAGE_TYPE_NAMES.get(value, value)


_FALLBACK_UNSAFE = re.compile(r'[^A-Za-z0-9._ ()\[\]+,=@-]')


def _ascii(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _FALLBACK_UNSAFE.sub("_", text).strip(" ._")


def content_disposition(*, filename: str, disposition: str = "attachment") -> str:
    """RFC 6266 header value: an ASCII fallback `filename` plus `filename*` in UTF-8."""
    name = safe_filename(filename, default="attachment")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    ascii_ext = _ascii(ext)
    ascii_name = (_ascii(stem) or "attachment") + (f".{ascii_ext}" if ascii_ext else "")
    value = f'{disposition}; filename="{ascii_name}"'
    if ascii_name != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def stored_content_type(attachment: Attachment) -> str:
    """The stored content type if it is a well-formed type/subtype, else octet-stream."""
    value = (attachment.content_type or "").split(";")[0].strip().lower()
    if re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", value):
        return value
    return "application/octet-stream"
