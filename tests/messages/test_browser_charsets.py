"""Mails of the public corpus, one per charset, shown as readable text in real Chromium.

For each charset in ../shared/corpus/public we take a mail with a text part in it, store
it, open its page, and look for a probe: a line of that part decoded independently here
with Python's codec (preferably one with non-ASCII letters). Mojibake, a wrong charset
label or escaped entities would make the probe miss.
"""
from __future__ import annotations

import email
import email.policy
import html
import os
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from . import mailfactory
from .browser import chromium, open_context, screenshot  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CORPUS = Path(os.environ.get("TENANTMAIL_CORPUS") or Path(settings.BASE_DIR).parent / "shared" / "corpus" / "public")
# Python knows these under other names, or (like browsers, per the WHATWG Encoding
# standard) reads them as their supersets; x-unknown cannot be read by anyone.
ALIASES = {"x-mac-cyrillic": "mac_cyrillic", "ks_c_5601-1987": "cp949", "gb2312": "gb18030", "big5": "big5hkscs"}
UNREADABLE = {"x-unknown"}


def _text_nodes(markup: str) -> list[str]:
    markup = re.sub(r"(?is)<(script|style|head|title)\b.*?</\1>", " ", markup)
    return [html.unescape(t) for t in re.split(r"<[^>]*>", markup)]


def _probe(text: str, subtype: str, ascii_only: bool) -> str | None:
    pieces = _text_nodes(text) if subtype == "html" else text.splitlines()
    for piece in pieces:
        piece = " ".join(piece.split())
        has_letters = any(ch.isalpha() and ord(ch) > 127 for ch in piece)
        if len(piece) < (2 if has_letters else 4):
            continue
        if has_letters or ascii_only:
            # A word-aligned slice keeps the probe short and free of wrapping issues.
            return piece[:40].rsplit(" ", 1)[0] if len(piece) > 40 and " " in piece[:40] else piece[:40]
    return None


def corpus_by_charset() -> dict[str, tuple[Path, str, str]]:
    """charset -> (file, subtype, probe), the first readable example of each charset."""
    if not CORPUS.is_dir():
        pytest.fail(f"The public corpus is missing at {CORPUS}; set TENANTMAIL_CORPUS to its folder.")
    chosen: dict[str, tuple[Path, str, str]] = {}
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix not in {".md", ".tsv"}):
        try:
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
            parts = [p for p in msg.walk() if not p.is_multipart() and p.get_content_maintype() == "text"]
        except Exception:
            continue
        for part in parts:
            charset = (part.get_content_charset() or "").lower()
            subtype = part.get_content_subtype()
            if not charset or charset in UNREADABLE or subtype not in {"plain", "html"}:
                continue
            if str(part.get("Content-Disposition") or "").lower().startswith("attachment"):
                continue
            if charset in chosen and not (chosen[charset][1] == "html" and subtype == "plain"):
                continue
            try:
                text = (part.get_payload(decode=True) or b"").decode(ALIASES.get(charset, charset))
            except (LookupError, UnicodeDecodeError):
                continue
            probe = _probe(text, subtype, ascii_only=charset == "us-ascii")
            if probe:
                chosen[charset] = (path, subtype, probe)
    return chosen


CHARSETS = corpus_by_charset() if CORPUS.is_dir() else {}


def test_corpus_has_the_charsets_we_expect():
    assert CORPUS.is_dir(), f"The public corpus is missing at {CORPUS}; set TENANTMAIL_CORPUS."
    # (The corpus's one big5 mail is not valid big5 — spam with mislabelled bytes — so it
    # cannot serve as a readable example.)
    expected = {"utf-8", "iso-8859-1", "us-ascii", "iso-2022-jp", "shift_jis", "euc-jp", "euc-kr",
                "ks_c_5601-1987", "gb2312", "windows-1251", "windows-1252", "x-mac-cyrillic"}
    assert expected <= set(CHARSETS), sorted(set(CHARSETS))


@pytest.mark.parametrize("charset", sorted(CHARSETS))
def test_charset_shown_as_readable_text(chromium, live_server, tenants, charset):
    path, subtype, probe = CHARSETS[charset]
    raw = path.read_bytes()
    message = mailfactory.store(connection=tenants["conn_a"], raw=raw)
    context, watch = open_context(chromium, live_server, tenants["alice"])
    page = context.new_page()
    response = page.goto(live_server.url + reverse("messages:detail", args=[message.pk]), wait_until="load")
    assert response.status == 200
    if page.locator("details.text-alt summary").count():
        page.locator("details.text-alt summary").click()
    shown = page.inner_text("main")
    for frame in page.frames:
        if "/body/" in frame.url:
            shown += "\n" + frame.inner_text("body")
    shown = " ".join(shown.split())
    screenshot(page, f"charset-{charset}")
    assert probe in shown, f"{path.relative_to(CORPUS)} ({charset} {subtype}): {probe!r} not shown"
    assert watch.outside == []  # corpus mails reference remote images; none may load
    context.close()
