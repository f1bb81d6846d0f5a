"""What the message page shows beyond the list row: the body made safe (stored sanitised
HTML with inline images), the parse problems, and the charset of the raw source."""
from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import Callable

from ...models import Attachment, StoredMessage
from . import safe_html
from .files import inline_url_map
from .queries import attachments_of
from .sanitize import SanitizedHtml


def stored_safe_html(*, message: StoredMessage) -> str:
    """The message's sanitised HTML as stored at parse time. A mail stored before that
    existed is prepared now, once (bounded cost, services.messages.safe_html), and kept."""
    if message.safe_html is not None:
        return message.safe_html
    prepared = safe_html.prepare(message.html_body)
    if message.parsed:
        changes: dict = {"safe_html": prepared.html}
        if prepared.note:
            changes["parse_problems"] = [*(message.parse_problems or []), prepared.note]
            message.parse_problems = changes["parse_problems"]
        StoredMessage.objects.filter(pk=message.pk, safe_html__isnull=True).update(**changes)
    message.safe_html = prepared.html
    return prepared.html


def sanitized_body(*, message: StoredMessage, load_remote: bool, url_for: Callable[[Attachment], str]) -> SanitizedHtml:
    """The message's HTML body made safe, with cid: images pointing at `url_for(att)`.
    Serves the stored sanitised HTML: no parsing, linear in its size."""
    stored = stored_safe_html(message=message)
    inline = inline_url_map(attachments=attachments_of(message=message), url_for=url_for) if "cid:" in stored else {}
    return safe_html.render(stored=stored, inline=inline, load_remote=load_remote)


@dataclass
class Problem:
    text: str
    details: list[tuple[str, str]] = field(default_factory=list)


def parse_problems(*, message: StoredMessage) -> list[Problem]:
    """The stored parse problems in a displayable shape, whatever their JSON form."""
    problems = message.parse_problems or []
    if isinstance(problems, (str, dict)):
        problems = [problems]
    result = []
    for item in problems:
        if isinstance(item, dict):
            text = str(item.get("problem") or item.get("message") or item.get("error") or item.get("kind") or "")
            details = [(str(k), str(v)) for k, v in item.items() if str(v) != text]
            result.append(Problem(text=text or "Problem", details=details))
        else:
            result.append(Problem(text=str(item)))
    if not message.parsed and not message.oversized:
        result.insert(0, Problem(text="Not parsed yet: headers and bodies appear once the message is processed; the source is complete."))
    if message.oversized:
        result.insert(0, Problem(text="Larger than the connection's maximum message size: only the headers were stored."))
    return result


def raw_charset(*, message: StoredMessage) -> str:
    """Charset label for showing the raw source as text: UTF-8 when it decodes, else Latin-1.

    Latin-1 maps every byte to a character, so the source is always shown byte for byte.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with message.raw.open("rb") as fh:
            while chunk := fh.read(1024 * 1024):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "iso-8859-1"
    except (OSError, ValueError):  # no raw file (purged by retention): the view answers 404
        return "utf-8"
    return "utf-8"
