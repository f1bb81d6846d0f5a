"""A mail's HTML body sanitised once, with a bounded cost, and served without re-sanitising.

Sanitising (nh3 / html5ever) costs about depth × size: every start tag looks through the
stack of open elements, so N nested `<div>`s cost N². A body is therefore measured first,
in one linear pass (`nesting_depth`), and one that is nested deeper than MAX_DEPTH or
larger than MAX_HTML_CHARS is not sanitised at all: it is stored as a safe placeholder
saying why (with the body's text, tags stripped, when that is short enough to be of use),
and the raw mail stays as it is for "View source" / "Download .eml". Every other body is
sanitised once and stored in StoredMessage.safe_html, in a form that still depends on two
things known only when a page is served:

- remote images: their sources are kept as `tm-remote:<url>`; `render` unmarks them when
  the reader asked to load remote images and drops them (counting them) otherwise (a
  protocol-relative `//host/…` source is stored as a bare `tm-remote:`: always dropped);
- inline images: `cid:` sources are kept as `cid:<normalised content id>`; `render`
  points them at the stored attachment's URL, or drops them.

`render` is one regular-expression pass over the stored HTML: linear, whatever the mail.
Only attribute values written by the sanitiser's serialiser can hold those markers in a
way that matters (a `"` inside a value is always escaped as `&quot;`); the same text in
the body's plain text is rewritten as text and stays text.
"""
from __future__ import annotations

import html as html_lib
import logging
import re
from dataclasses import dataclass
from typing import Mapping

from .sanitize import SanitizedHtml, sanitize_html

log = logging.getLogger(__name__)

# Deeper than any real mail (long Outlook reply chains nest tables a few dozen levels):
# with this bound, sanitising a body costs at most about MAX_DEPTH × its size.
MAX_DEPTH = 256
MAX_HTML_CHARS = 16 * 1024 * 1024
# A placeholder keeps the body's text (tags stripped) up to this many characters.
PLACEHOLDER_TEXT_MAX = 200_000
REMOTE_MARK = "tm-remote:"

# Elements that never hold content, and those whose end tag is optional: the parser
# closes an open one when the next sibling starts, so they do not nest by repetition.
_VOID = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "keygen", "link", "meta",
    "param", "source", "track", "wbr", "basefont", "bgsound", "frame", "image",
})
_OPTIONAL_END = frozenset({
    "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "thead", "tbody", "tfoot",
    "rb", "rt", "rp", "rtc", "colgroup", "caption",
})
_TAG = re.compile(r"<(/?)([A-Za-z][^\s/>]{0,40})")
# "<" to the next ">" without crossing another "<": linear even on "<<<<…".
_ANY_TAG = re.compile(r"<[^<>]*>")
_MARKED_SRC = re.compile(r'\ssrc="(tm-remote:|cid:)([^"]*)"')


@dataclass
class PreparedHtml:
    html: str  # what StoredMessage.safe_html holds
    note: str = ""  # why the body is a placeholder ("" when it was sanitised)


def nesting_depth(html: str, *, limit: int = MAX_DEPTH) -> int:
    """How deeply the body's elements nest (an upper bound of what an HTML parser builds),
    in one pass; stops as soon as it exceeds `limit` and returns that depth."""
    depth = deepest = 0
    for match in _TAG.finditer(html):
        name = match.group(2).lower()
        if name in _VOID or name in _OPTIONAL_END:
            continue
        if match.group(1):
            if depth:
                depth -= 1
        else:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
    return deepest


def _squeeze_lines(text: str) -> str:
    """Lines stripped, runs of blank lines made one (plain Python: no regex backtracking)."""
    lines: list[str] = []
    for line in text.splitlines():
        line = " ".join(line.split())
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip()


def _placeholder(html: str, reason: str) -> PreparedHtml:
    note = (f"The HTML body is not shown: {reason}. Showing it could stall the pages, so it was "
            "not rendered; the raw message is kept unchanged (View source, Download .eml).")
    text = ""
    if len(html) <= 4 * PLACEHOLDER_TEXT_MAX:
        text = html_lib.unescape(_ANY_TAG.sub(" ", html))
        text = _squeeze_lines(text)[:PLACEHOLDER_TEXT_MAX]
    body = f'<p class="tm-withheld"><strong>{html_lib.escape(note)}</strong></p>'
    if text:
        body += f"<pre>{html_lib.escape(text)}</pre>"
    return PreparedHtml(html=body, note=note)


def prepare(html: str) -> PreparedHtml:
    """The stored form of a mail's HTML body: sanitised, or a placeholder when the body is
    too large or too deeply nested to sanitise at a bounded cost."""
    if not html:
        return PreparedHtml(html="")
    if len(html) > MAX_HTML_CHARS:
        return _placeholder(html, f"it is {len(html):,} characters long (the limit is {MAX_HTML_CHARS:,})")
    depth = nesting_depth(html)
    if depth > MAX_DEPTH:
        return _placeholder(html, f"its elements are nested more than {MAX_DEPTH} levels deep")
    cleaned = sanitize_html(html=html, inline_url=lambda cid: f"cid:{cid}", mark_remote=REMOTE_MARK)
    return PreparedHtml(html=cleaned.html)


def prepare_into(parsed) -> None:
    """Set `parsed.safe_html` (a parsing.results.ParsedMessage), noting a placeholder among its
    problems. Never raises: on a failure it stays None and the page prepares it."""
    try:
        prepared = prepare(parsed.html_body)
    except Exception:
        log.exception("could not sanitise an HTML body")
        return
    parsed.safe_html = prepared.html
    if prepared.note:
        parsed.problem(prepared.note)


def render(*, stored: str, inline: Mapping[str, str], load_remote: bool) -> SanitizedHtml:
    """The stored form made ready for the frame: one linear pass, no parsing."""
    result = SanitizedHtml(html="")

    def replace(match: re.Match) -> str:
        kind, value = match.group(1), match.group(2)
        if kind == REMOTE_MARK:
            if load_remote and value:  # an empty one was protocol-relative: never loaded
                return f' src="{value}"'
            result.blocked_remote += 1
            return ""
        cid = html_lib.unescape(value)
        target = inline.get(cid)
        if target is None:
            result.missing_inline.append(cid)
            return ""
        return f' src="{html_lib.escape(target)}"'

    result.html = _MARKED_SRC.sub(replace, stored)
    return result
