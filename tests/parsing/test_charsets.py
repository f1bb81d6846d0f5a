"""decode_bytes: UTF-8 mislabelled as a single-byte charset is read as UTF-8 (and noted),
while text genuinely in a single-byte charset is never misread as UTF-8."""
from __future__ import annotations

from email import policy
from email.parser import BytesParser

import pytest

from connections.services.parsing.charsets import codec_for, decode_bytes
from connections.services.parsing.parse import parse_bytes
from connections.services.parsing.results import ParsedMessage

from tests.mailcorpus import cases, corpus_files

_SINGLE_BYTE = ["windows-1251", "koi8-r", "iso-8859-1", "latin1", "windows-1252", "iso-8859-2", "iso-8859-5",
                "us-ascii", "x-mac-cyrillic", "cp866"]


def test_corpus_utf8_labelled_windows_1251_reads_as_utf8():
    for where, raw in cases("charset-traps/utf8-labelled-windows-1251.eml", "SpamScope__mail-parser/tests/mails/mail_test_4"):
        parsed = parse_bytes(raw)
        assert "Protección" in parsed.html_body, where
        assert "ProtecciГіn" not in parsed.html_body, where
        assert any("labelled windows-1251 is UTF-8" in p for p in parsed.problems), (where, parsed.problems)


@pytest.mark.parametrize("charset", _SINGLE_BYTE)
def test_synthetic_utf8_mislabelled_as_single_byte(charset):
    text = "Grüße, Привет, Protección — ok"
    result = ParsedMessage()
    assert decode_bytes(text.encode("utf-8"), charset, result, where="part 1: ") == text
    assert result.problems == [f"part 1: text labelled {charset} is UTF-8; decoded as UTF-8"]
    raw = (f"From: a@example.test\r\nSubject: s\r\nContent-Type: text/plain; charset={charset}\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + text.encode("utf-8")
    parsed = parse_bytes(raw)
    assert parsed.text_body == text
    assert any("is UTF-8" in p for p in parsed.problems)


@pytest.mark.parametrize("charset,text", [
    ("windows-1251", "Текущий счёт: оплата до пятницы. Спасибо!"),
    ("koi8-r", "Съешь же ещё этих мягких французских булок, да выпей чаю"),
    ("iso-8859-1", "Ça coûte 5 € ? Non : 5 £, déjà payé. Grüße aus Köln"),
    ("iso-8859-2", "Zażółć gęślą jaźń - Příliš žluťoučký kůň"),
    ("x-mac-cyrillic", "Привет, мир"),
])
def test_genuine_single_byte_text_is_not_read_as_utf8(charset, text):
    codec = codec_for(charset)
    data = text.replace("€", "EUR").encode(codec) if charset == "iso-8859-1" else text.encode(codec)
    result = ParsedMessage()
    assert decode_bytes(data, charset, result) == data.decode(codec)
    assert result.problems == []


def test_single_byte_corpus_parts_that_are_not_utf8_keep_their_charset():
    """Every text part of the corpus labelled with a single-byte charset whose bytes are not
    UTF-8 decodes exactly in its declared charset (nothing is guessed as UTF-8)."""
    checked = 0
    for path in corpus_files():
        msg = BytesParser(policy=policy.compat32).parsebytes(path.read_bytes())
        for part in msg.walk():
            if part.is_multipart() or part.get_content_maintype() != "text":
                continue
            try:
                charset = part.get_content_charset()
                data = part.get_payload(decode=True)
            except Exception:
                continue
            codec = codec_for(charset)
            if not codec or not isinstance(data, bytes) or data.isascii() or codec in ("utf-8",):
                continue
            try:
                data.decode("utf-8")
                continue  # valid UTF-8: covered by the tests above
            except UnicodeDecodeError:
                pass
            try:
                expected = data.decode(codec)
            except (UnicodeDecodeError, LookupError):
                continue
            result = ParsedMessage()
            got = decode_bytes(data, charset, result)
            assert got == expected.replace("\x00", ""), (path, charset)
            assert not any("is UTF-8" in p for p in result.problems), (path, result.problems)
            checked += 1
    assert checked >= 10


def test_corpus_cyrillic_headers_still_decode():
    for where, raw in cases("headers/koi8-r-B.eml",
                            "mikel__mail/spec/fixtures/emails/plain_emails/raw_email_bad_time.eml"):
        assert parse_bytes(raw).from_header.startswith("Атиков"), where
    for where, raw in cases("headers/windows-1251-Q.eml", "php-mime-mail-parser__php-mime-mail-parser/tests/mails/m0021"):
        assert "Путін" in parse_bytes(raw).subject, where
