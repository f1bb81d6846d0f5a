"""Parsing: every mail of the corpus (generated, plus the public one when present), plus the
known traps one by one."""
from __future__ import annotations

import hashlib

import pytest

from connections.services.parsing.charsets import decode_bytes
from connections.services.parsing.parse import parse_bytes, parse_file

from tests.mailcorpus import cases, corpus_files, corpus_name


def _readable(text: str) -> bool:
    """No NUL, no lone surrogates, and mostly not replacement characters."""
    text.encode("utf-8")
    assert "\x00" not in text
    return text.count("\ufffd") <= max(3, len(text) // 50)


def test_every_corpus_mail_parses_without_loss():
    files = corpus_files()
    failures = []
    for path in files:
        raw = path.read_bytes()
        name = corpus_name(path)
        try:
            parsed = parse_bytes(raw)
        except Exception as exc:  # the point of the test: this must never happen
            failures.append(f"{name}: raised {type(exc).__name__}: {exc}")
            continue
        for field in ("message_id", "from_header", "to_header", "cc_header", "reply_to_header", "subject"):
            value = getattr(parsed, field)
            value.encode("utf-8")  # storable
            assert "\x00" not in value
            if "=?" in value and "?=" in value and field == "subject":
                failures.append(f"{name}: {field} still RFC 2047-encoded: {value!r}")
        for body in (parsed.text_body, parsed.html_body):
            if not _readable(body):
                failures.append(f"{name}: body not readable text ({body[:80]!r})")
        for att in parsed.attachments:
            assert att.sha256 == hashlib.sha256(att.payload).hexdigest()
            assert att.size == len(att.payload)
            assert att.filename and "/" not in att.filename
        # Nothing vanishes: a mail with content has a body, an attachment, or a recorded problem.
        if len(raw) > 200 and not (parsed.text_body or parsed.html_body or parsed.attachments or parsed.problems):
            failures.append(f"{name}: parsed to nothing")
    assert not failures, "\n".join(failures)
    assert len(files) >= 200


@pytest.mark.parametrize("name,rel,subject_part,body_part", [
    ("headers/iso-2022-jp-B.eml", "mikel__mail/spec/fixtures/emails/multi_charset/japanese_iso_2022.eml", "まみむめも", None),
    ("charset-traps/iso-2022-jp-extended-subject.eml", "php-mime-mail-parser__php-mime-mail-parser/tests/mails/issue116", "ЖД", None),
    ("headers/iso-8859-8-i-B.eml", "php-mime-mail-parser__php-mime-mail-parser/tests/mails/issue149", "מענה", None),
    ("charset-traps/gbk-labelled-gb2312.eml", "SpamScope__mail-parser/tests/mails/mail_test_9", "我把镜头拉近些", None),
    ("charset-traps/invalid-subject-characters.eml",
     "mikel__mail/spec/fixtures/emails/error_emails/invalid_subject_characters.eml", "Formação", None),
    ("charset-traps/latin1-labelled-utf8.eml", "php-mime-mail-parser__php-mime-mail-parser/tests/mails/m0019", None,
     "Det här är"),
    ("eightbit/utf8.eml", "mikel__mail/spec/fixtures/emails/rfc6532/utf8_headers.eml", "Säying Hello", None),
])
def test_charsets_decode_to_readable_text(name, rel, subject_part, body_part):
    for where, raw in cases(name, rel):
        parsed = parse_bytes(raw)
        if subject_part:
            assert subject_part in parsed.subject, where
        if body_part:
            assert body_part in parsed.text_body, where


def test_unknown_charset_is_a_problem_not_a_crash():
    raw = b"From: a@example.test\r\nSubject: x\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\nH\xe9llo\r\n"
    parsed = parse_bytes(raw)
    assert parsed.text_body.startswith("Héllo")
    assert any("x-unknown" in p for p in parsed.problems)
    assert decode_bytes("Привет".encode("mac_cyrillic"), "x-mac-cyrillic") == "Привет"


def test_multipart_without_boundary_is_kept_raw():
    raw = (b"From: a@example.test\r\nSubject: no boundary\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed\r\n\r\n--xyz\r\nContent-Type: text/plain\r\n\r\nhello\r\n--xyz--\r\n")
    parsed = parse_bytes(raw)
    assert parsed.attachments and parsed.attachments[0].raw_kept
    assert b"hello" in parsed.attachments[0].payload
    assert any("without usable boundary" in p for p in parsed.problems)


def test_broken_address_header_falls_back_to_raw_text():
    raw = b"From: \"unterminated <a@example.test\r\nTo: ,,,@,\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\nbody\r\n"
    parsed = parse_bytes(raw)
    assert parsed.subject == "café"
    assert "a@example.test" in parsed.from_header
    assert parsed.text_body.strip() == "body"


def test_nested_message_and_filenames():
    raw = (
        b"From: a@example.test\r\nSubject: outer\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
        b"--b1\r\nContent-Type: multipart/related; boundary=b2\r\n\r\n"
        b"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>hi <img src=cid:img1></p>\r\n"
        b"--b2\r\nContent-Type: image/png\r\nContent-ID: <img1>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
        b"--b2--\r\n"
        b"--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=UTF-8''R%C3%A9sum%C3%A9.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"=?utf-8?B?w6TDtsO8LnR4dA==?=\"\r\n\r\nabc\r\n"
        b"--b1\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@example.test\r\nSubject: inner\r\n\r\ninner body\r\n"
        b"--b1--\r\n"
    )
    parsed = parse_bytes(raw)
    assert parsed.html_body.startswith("<p>hi")
    by_type = {a.content_type: a for a in parsed.attachments}
    assert by_type["image/png"].inline and by_type["image/png"].content_id == "img1"
    assert by_type["image/png"].payload == b"\x89PNG\r\n\x1a\n"
    assert by_type["application/pdf"].filename == "Résumé.pdf"
    assert by_type["application/octet-stream"].filename == "äöü.txt"
    inner = by_type["message/rfc822"]
    assert b"Subject: inner" in inner.payload and b"inner body" in inner.payload
    assert inner.filename == "inner.eml"
    # The inner message is an attachment, not mixed into the outer bodies.
    assert "inner body" not in parsed.text_body


def test_nul_bytes_never_reach_text():
    raw = b"From: a@example.test\r\nSubject: n\x00ul\r\n\r\nbo\x00dy\r\n"
    parsed = parse_bytes(raw)
    assert "\x00" not in parsed.subject and "\x00" not in parsed.text_body
    assert parsed.text_body.strip() == "body"
    assert any("NUL" in p for p in parsed.problems)


def test_streaming_parser_matches_in_memory_parser_on_wellformed_mail(tmp_path):
    payload = bytes(range(256)) * 4000  # 1 MB binary
    import base64

    b64 = base64.encodebytes(payload)
    raw = (b"From: a@example.test\r\nSubject: =?utf-8?q?big_caf=C3=A9?=\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=zz\r\n\r\npreamble\r\n--zz\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n\r\nH=E9llo w=\r\norld\r\n--zz\r\n"
           b"Content-Type: application/octet-stream; name=blob.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + b64.replace(b"\n", b"\r\n") + b"--zz--\r\n")
    path = tmp_path / "big.eml"
    path.write_bytes(raw)
    a = parse_bytes(raw)
    b = parse_file(str(path), tmpdir=str(tmp_path))
    assert a.subject == b.subject == "big café"
    assert a.text_body == b.text_body == "Héllo world"
    assert [x.sha256 for x in a.attachments] == [x.sha256 for x in b.attachments]
    assert b.attachments[0].sha256 == hashlib.sha256(payload).hexdigest()
    assert b.attachments[0].filename == "blob.bin"
    b.cleanup()


def test_streaming_parser_survives_the_corpus(tmp_path):
    for path in corpus_files():
        parsed = parse_file(str(path), tmpdir=str(tmp_path))
        for value in (parsed.subject, parsed.text_body, parsed.html_body):
            value.encode("utf-8")
            assert "\x00" not in value
        parsed.cleanup()
    assert not list(tmp_path.iterdir()), "temporary part files left behind"


def test_split_in_memory_equals_the_email_package_path():
    """Mails from SPLIT_MIN on are cut by the one splitter over the buffer (bytes or a
    memoryview); it must agree exactly with the email package parsing the whole mail."""
    from connections.services.parsing import parse as parsing
    from connections.services.parsing.results import ParsedMessage
    from connections.services.parsing.splitter import Fallback

    def split(raw):
        result = ParsedMessage()
        try:
            parsing.split(raw, result, None, strict=True)
        except Fallback:
            return None
        return result

    def key(r):
        return (r.subject, r.from_header, r.to_header, r.cc_header, r.reply_to_header, r.message_id, r.date,
                r.text_body, r.html_body, r.problems,
                sorted((a.filename, a.content_type, a.sha256, a.size, a.inline, a.content_id) for a in r.attachments))

    import base64
    import os

    blob = os.urandom(100_000)
    synthetic = (
        b"From: a@example.test\r\nTo: b@example.test\r\nSubject: fast\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"abc\"\r\n\r\npreamble\r\n"
        b"--abc\r\nContent-Type: multipart/alternative; boundary=\"abc-1\"\r\n\r\n"
        b"--abc-1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"caf=C3=A9 =\r\nau lait\r\n--abc-1\r\nContent-Type: text/html\r\n\r\n<b>x</b>\r\n--abc-1--\r\n"
        b"--abc\r\nContent-Type: image/png\r\nContent-ID: <i1>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(blob).replace(b"\n", b"\r\n") +
        b"--abc\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(blob[:50_000]).replace(b"\n", b"\r\n") + b"--abc--\r\nepilogue\r\n"
    )
    samples = [synthetic] + [p.read_bytes() for p in corpus_files()]
    used = 0
    # Every mail, whatever its size (parse_bytes only splits from SPLIT_MIN on): the
    # small ones hold most of the corpus's oddities.
    for raw in samples:
        if b"\x00" in raw:
            continue  # parse_bytes never splits a mail with NUL bytes
        fast = split(raw)
        if fast is None:
            continue
        used += 1
        assert key(fast) == key(parsing.parse_with_email_package(raw))
        assert key(split(memoryview(raw))) == key(fast)
    assert used >= 100
    parsed = parsing.parse_bytes(synthetic)
    assert parsed.text_body == "café au lait" and parsed.html_body == "<b>x</b>"
    assert {a.sha256 for a in parsed.attachments} == {hashlib.sha256(blob).hexdigest(),
                                                       hashlib.sha256(blob[:50_000]).hexdigest()}
    broken = synthetic.replace(b"--abc--", b"--abd--")  # no close delimiter: as the email package reads it
    assert key(split(broken)) == key(parsing.parse_with_email_package(broken))
    assert parsing.parse_bytes(broken).attachments
