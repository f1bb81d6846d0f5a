"""Mails of the corpus, one per charset, shown as readable text in real Chromium.

For each charset in the corpus (tests/mailcorpus: the generated mails, plus
../shared/corpus/public when present) we take a mail with a text part in it, store
it, open its page, and look for a probe: a line of that part decoded independently here
with Python's codec (preferably one with non-ASCII letters). Mojibake, a wrong charset
label or escaped entities would make the probe miss.
"""
from __future__ import annotations

import codecs
import email
import email.policy
import html
import re
from pathlib import Path

import pytest
from django.urls import reverse

from tests.mailcorpus import corpus_files, corpus_name

from . import mailfactory
from .browser import chromium, open_context, screenshot  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Python knows these under other names, or (like browsers, per the WHATWG Encoding
# standard) reads them as their supersets; x-unknown cannot be read by anyone.
ALIASES = {"x-mac-cyrillic": "mac_cyrillic", "ks_c_5601-1987": "cp949", "gb2312": "gb18030", "big5": "big5hkscs"}
UNREADABLE = {"x-unknown"}


def _text_nodes(markup: str) -> list[str]:
    markup = re.sub(r"(?is)<(script|style|head|title)\b.*?</\1>", " ", markup)
    return [html.unescape(t) for t in re.split(r"<[^>]*>", markup)]


def _short(piece: str) -> str:
    # A word-aligned slice keeps the probe short and free of wrapping issues.
    return piece[:40].rsplit(" ", 1)[0] if len(piece) > 40 and " " in piece[:40] else piece[:40]


def _probe(text: str, subtype: str) -> tuple[str, bool] | None:
    """(probe, has non-ASCII letters): preferably a line with non-ASCII letters; else an
    ASCII line (still a test for charsets like UTF-16, where a wrong decoding garbles it)."""
    pieces = _text_nodes(text) if subtype == "html" else text.splitlines()
    fallback = None
    for piece in pieces:
        piece = " ".join(piece.replace("\x00", "").split())
        has_letters = any(ch.isalpha() and ord(ch) > 127 for ch in piece)
        if len(piece) < (2 if has_letters else 4):
            continue
        if has_letters:
            # Start near the first non-ASCII letter, at a word boundary, so the probe has it.
            first = next(i for i, ch in enumerate(piece) if ch.isalpha() and ord(ch) > 127)
            start = piece.rfind(" ", 0, max(first - 15, 0)) + 1
            return _short(piece[start:]), True
        if fallback is None and any(ch.isalpha() for ch in piece):
            fallback = (_short(piece), False)
    return fallback


def _mislabelled_utf8(payload: bytes, charset: str) -> bool:
    if charset in {"utf-8", "us-ascii"} or payload.isascii() or charset.startswith("utf-16"):
        return False
    try:
        payload.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _single_byte(charset: str) -> bool:
    try:
        return codecs.lookup(ALIASES.get(charset, charset)).name.startswith(
            ("cp125", "iso8859", "koi8", "mac-", "mac_", "latin", "cp437", "cp85", "cp86", "cp874"))
    except LookupError:
        return False


def corpus_by_charset() -> dict[str, tuple[Path, str, str]]:
    """charset -> (file, subtype, probe), the first readable example of each charset."""
    chosen: dict[str, tuple[Path, str, str]] = {}
    quality: dict[str, tuple[bool, bool, bool]] = {}
    for path in corpus_files():
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
            payload = part.get_payload(decode=True) or b""
            try:
                text = payload.decode(ALIASES.get(charset, charset))
            except (LookupError, UnicodeDecodeError):
                continue
            if _mislabelled_utf8(payload, charset) and _single_byte(charset):
                # Shown as UTF-8 (with a parse problem): valid multi-byte UTF-8 under a
                # single-byte label is UTF-8, not mojibake (parsing.decode_bytes).
                text = payload.decode("utf-8")
            found = _probe(text, subtype)
            if not found:
                continue
            probe, letters = found
            # Keep the first example, but prefer one with non-ASCII letters, then one that is
            # not UTF-8 mislabelled as a legacy charset (mojibake by its own label), then plain.
            rank = (letters, not _mislabelled_utf8(payload, charset), subtype == "plain")
            if charset not in quality or rank > quality[charset]:
                chosen[charset], quality[charset] = (path, subtype, probe), rank
    return chosen


CHARSETS = corpus_by_charset()


def test_corpus_has_the_charsets_we_expect():
    # (The public corpus's one big5 mail is not valid big5 — spam with mislabelled bytes —
    # so a generated one serves as the readable example.)
    expected = {"utf-8", "iso-8859-1", "us-ascii", "iso-2022-jp", "shift_jis", "euc-jp", "euc-kr",
                "ks_c_5601-1987", "gb2312", "windows-1251", "windows-1252", "x-mac-cyrillic",
                "utf-16le", "utf-16be"}
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
    assert probe in shown, f"{corpus_name(path)} ({charset} {subtype}): {probe!r} not shown"
    assert watch.outside == []  # corpus mails reference remote images; none may load
    context.close()


# --- Encoded headers (RFC 2047) in every charset the corpus uses ------------------------

HEADER_ALIASES = {**ALIASES, "iso-8859-8-i": "iso-8859-8"}
_ENCODED_WORD = re.compile(r"=\?([^?*]+)(?:\*[^?]*)?\?[bBqQ]\?")


def _decoded_fragments(value: str) -> list[tuple[str, str]]:
    """(charset, text) of the RFC 2047 parts of a header value, decoded independently."""
    import email.header

    try:
        pieces = email.header.decode_header(value)
    except Exception:
        return []
    result = []
    for data, charset in pieces:
        if not charset or not isinstance(data, bytes):
            continue
        try:
            text = data.decode(HEADER_ALIASES.get(charset.lower(), charset.lower()))
        except (LookupError, UnicodeDecodeError):
            continue
        text = " ".join(text.split())
        if len(text) >= 2:
            result.append((charset.lower(), text))
    return result


def corpus_header_cases() -> dict[str, tuple[Path, str, str]]:
    """charset -> (file, where, probe) for encoded words in Subject, From or a file name."""
    chosen: dict[str, tuple[Path, str, str]] = {}
    for path in corpus_files():
        try:
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
            values = [("subject", str(msg.get("Subject") or "")), ("from", str(msg.get("From") or ""))]
            for part in msg.walk():
                name = part.get_param("name") or part.get_param("filename", header="Content-Disposition")
                if isinstance(name, str):
                    values.append(("filename", name))
        except Exception:
            continue
        for where, value in values:
            if not _ENCODED_WORD.search(value):
                continue
            for charset, text in _decoded_fragments(value):
                has_letters = any(ch.isalpha() and ord(ch) > 127 for ch in text)
                if charset in chosen and not has_letters:
                    continue
                if charset not in chosen or (has_letters and not any(
                        ord(ch) > 127 for ch in chosen[charset][2])):
                    chosen[charset] = (path, where, _short(text))
    return chosen


HEADER_CASES = corpus_header_cases()


def test_corpus_has_the_header_charsets_we_expect():
    expected = {"utf-8", "iso-8859-1", "iso-8859-2", "iso-8859-8-i", "windows-1250", "windows-1251",
                "windows-1252", "iso-2022-jp", "euc-kr", "gb2312", "ks_c_5601-1987"}
    assert expected <= set(HEADER_CASES), sorted(HEADER_CASES)


def test_encoded_headers_in_every_charset_shown_as_readable_text(chromium, live_server, tenants):
    """Subject, sender and attachment names in each charset, decoded the same way by
    Python's email package here, appear on the message page as text."""
    context, watch = open_context(chromium, live_server, tenants["alice"])
    page = context.new_page()
    missed = []
    for charset, (path, where, probe) in sorted(HEADER_CASES.items()):
        message = mailfactory.store(connection=tenants["conn_a"], raw=path.read_bytes())
        response = page.goto(live_server.url + reverse("messages:detail", args=[message.pk]), wait_until="load")
        assert response.status == 200
        region = {"subject": "h1", "from": "dl.headers", "filename": "main"}[where]
        shown = " ".join(page.inner_text(region).split())
        if probe not in shown:
            missed.append(f"{corpus_name(path)} ({charset} {where}): {probe!r} not in {shown[:200]!r}")
        screenshot(page, f"charset-header-{charset}")
    assert not missed, "\n".join(missed)
    assert watch.outside == []
    context.close()
