"""The streaming parser (parse_file, for big mails) reads every mail exactly as parse_bytes
does: same headers, bodies, attachments and problems, for every mail of the corpus (generated,
plus the public one when present) —
with its leaves parsed in memory, and with every leaf transfer-decoded from the file in
chunks (the path a big attachment takes)."""
from __future__ import annotations

import base64
import hashlib
import os

import pytest

from connections.services.parsing import leaves, lines
from connections.services.parsing.parse import parse_bytes, parse_file, split
from connections.services.parsing.results import ParsedMessage
from connections.services.parsing.splitter import Fallback

from tests.mailcorpus import cases, corpus_files, corpus_name, generated_path


def _key(r: ParsedMessage) -> dict:
    return {
        "headers": r.header_fields(),
        "text": r.text_body,
        "html": r.html_body,
        "attachments": [(a.filename, a.content_type, a.sha256, a.size, a.inline, a.content_id, a.raw_kept)
                        for a in r.attachments],
        "problems": list(r.problems),
    }


def _files_hold_their_bytes(r: ParsedMessage) -> None:
    for a in r.attachments:
        with a.open() as fh:
            data = fh.read()
        assert len(data) == a.size and hashlib.sha256(data).hexdigest() == a.sha256


def _compare_corpus(tmp_path) -> list[str]:
    failures = []
    for path in corpus_files():
        raw = path.read_bytes()
        expected = _key(parse_bytes(raw))
        got = parse_file(str(path), tmpdir=str(tmp_path))
        _files_hold_their_bytes(got)
        key = _key(got)
        got.cleanup()
        diff = [k for k in expected if expected[k] != key[k]]
        if diff:
            failures.append(f"{corpus_name(path)}: {diff}: "
                            + "; ".join(f"{k}: {expected[k]!r:.200} != {key[k]!r:.200}" for k in diff))
    assert not list(tmp_path.iterdir()), "temporary part files left behind"
    return failures


def _fallbacks(tmp_path) -> dict[str, str]:
    """Corpus mails the splitter hands to parse_bytes (and why)."""
    out = {}
    for path in corpus_files():
        result = ParsedMessage()
        try:
            with open(path, "rb") as fh:
                split(fh, result, str(tmp_path), strict=True)
        except Fallback as exc:
            out[corpus_name(path)] = str(exc)
        result.cleanup()
    return out


# The one designed hand-over in the corpus: the splitter cannot search for a boundary
# that is not ASCII (the email package never finds it either: the body is one preamble).
DESIGNED_FALLBACKS = {"generated/boundaries/non-ascii-boundary.eml": "non-ASCII boundary"}


def test_parse_file_equals_parse_bytes_on_the_whole_corpus(tmp_path):
    failures = _compare_corpus(tmp_path)
    assert not failures, "\n".join(failures)
    # ...and by streaming, not by handing the mail to parse_bytes.
    assert _fallbacks(tmp_path) == DESIGNED_FALLBACKS


@pytest.mark.parametrize("chunk", [4096, 7])
def test_chunked_decoding_of_every_leaf_equals_parse_bytes(tmp_path, monkeypatch, chunk):
    """Every leaf part as if it were a 50 MB attachment: decoded from the file in chunks."""
    monkeypatch.setattr(leaves, "STREAM_LEAF_IN_MEMORY_MAX", 0)
    monkeypatch.setattr(lines, "CHUNK", chunk)  # chunk edges inside lines, CRLFs and base64 quads
    failures = _compare_corpus(tmp_path)
    assert not failures, "\n".join(failures)
    # Only broken base64 and uuencode (decoded by the email package's own rules) fall back.
    reasons = set(_fallbacks(tmp_path).values())
    assert reasons <= {"invalid base64 in a large part", "large uuencoded part", *DESIGNED_FALLBACKS.values()}, reasons


@pytest.mark.parametrize("name,rel,needle", [
    ("boundaries/boundary-never-used.eml", "stalwartlabs__mail-parser/resources/eml/malformed/002.eml", "body"),
    ("boundaries/qp-and-garbage-base64.eml", "stalwartlabs__mail-parser/resources/eml/thirdparty/002.eml", "yötä"),
    ("boundaries/boundary-mismatch.eml", "SpamScope__mail-parser/tests/mails/mail_malformed_3", None),
    ("boundaries/boundary-folded-with-space.eml", "stalwartlabs__mail-parser/resources/eml/thirdparty/012.eml", None),
    ("structure/digest.eml", "stalwartlabs__mail-parser/resources/eml/rfc/004.eml", None),
])
def test_mails_the_old_streaming_parser_misread(name, rel, needle, tmp_path):
    for where, raw in cases(name, rel):
        path = tmp_path / "m.eml"
        path.write_bytes(raw)
        expected = _key(parse_bytes(raw))
        got = parse_file(str(path), tmpdir=str(tmp_path))
        assert _key(got) == expected, where
        if needle:
            assert needle in got.text_body, where
        got.cleanup()


def test_best_effort_split_never_raises_and_cleans_up(tmp_path, monkeypatch):
    """A mail too big for the parse_bytes fallback is split best effort: never raises."""
    monkeypatch.setattr(leaves, "STREAM_LEAF_IN_MEMORY_MAX", 0)
    for path in corpus_files():
        if corpus_name(path) in DESIGNED_FALLBACKS:
            continue  # not split at all: see the next test
        result = ParsedMessage()
        with open(path, "rb") as fh:
            split(fh, result, str(tmp_path), strict=False)
        for value in (result.subject, result.text_body, result.html_body):
            value.encode("utf-8")
            assert "\x00" not in value
        _files_hold_their_bytes(result)
        result.cleanup()
    assert not list(tmp_path.iterdir())


def test_a_big_mail_with_a_non_ascii_boundary_is_kept_raw_with_a_problem(tmp_path, monkeypatch):
    monkeypatch.setattr(leaves, "STREAM_FALLBACK_MAX", 0)  # as if it were too big for parse_bytes
    for name in DESIGNED_FALLBACKS:
        got = parse_file(str(generated_path(name.removeprefix("generated/"))), tmpdir=str(tmp_path))
        assert any("could not be fully parsed" in p for p in got.problems), got.problems
        got.cleanup()
    assert not list(tmp_path.iterdir())


def test_big_malformed_mail_beyond_the_fallback_size_is_split_best_effort(tmp_path, monkeypatch):
    monkeypatch.setattr(leaves, "STREAM_FALLBACK_MAX", 1000)
    monkeypatch.setattr(leaves, "STREAM_LEAF_IN_MEMORY_MAX", 1000)
    blob = os.urandom(300_000)
    raw = (b"From: a@example.test\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
           b"--zz\r\nContent-Type: application/octet-stream; name=b.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + base64.encodebytes(blob).replace(b"\n", b"\r\n") + b"-- broken\r\n")  # no close boundary
    path = tmp_path / "m.eml"
    path.write_bytes(raw)
    spool = tmp_path / "spool"
    spool.mkdir()
    got = parse_file(str(path), tmpdir=str(spool))
    assert got.text_body == "hello"
    assert "CloseBoundaryNotFoundDefect" in got.problems
    (att,) = got.attachments
    assert att.path and att.payload is None  # streamed to a file
    assert att.filename == "b.bin"
    got.cleanup()
    assert not list(spool.iterdir())


def test_big_attachment_is_decoded_to_a_file_not_memory(tmp_path):
    blob = os.urandom(3 * 1024 * 1024)
    text = "Grüße ".encode("iso-8859-1") * 10
    raw = (b"From: a@example.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\npreamble\r\n--b\r\n"
           b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
           + text.replace(b"\xfc", b"=FC").replace(b"\xdf", b"=DF") + b"=\r\nend\r\n--b\r\n"
           b"Content-Type: application/pdf; name=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + base64.encodebytes(blob).replace(b"\n", b"\r\n") + b"--b--\r\nepilogue\r\n")
    path = tmp_path / "big.eml"
    path.write_bytes(raw)
    spool = tmp_path / "spool"
    spool.mkdir()
    got = parse_file(str(path), tmpdir=str(spool))
    expected = parse_bytes(raw)
    assert _key(got) == _key(expected)
    assert got.subject == "café" and got.text_body == text.decode("iso-8859-1") + "end"
    (att,) = got.attachments
    assert att.payload is None and att.path and att.sha256 == hashlib.sha256(blob).hexdigest()
    got.cleanup()
    assert not list(spool.iterdir())


def _mutations(seed: int, count: int) -> list[tuple[str, bytes]]:
    """Corpus mails broken the ways real mail breaks: truncated, a piece cut out or
    repeated, line ends changed, two lines swapped (seeded: the same cases every run)."""
    import random

    rng = random.Random(seed)
    files = [p for p in corpus_files() if p.stat().st_size <= 300_000]
    out = []
    for _ in range(count):
        path = rng.choice(files)
        raw = path.read_bytes()
        op = rng.choice(["truncate", "cut", "repeat", "crlf", "lf", "cr", "swap"])
        a = rng.randrange(len(raw) + 1)
        b = min(len(raw), a + rng.randrange(300))
        if op == "truncate":
            raw = raw[:a]
        elif op == "cut":
            raw = raw[:a] + raw[b:]
        elif op == "repeat":
            raw = raw[:b] + raw[a:b] + raw[b:]
        elif op == "crlf":
            raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        elif op == "lf":
            raw = raw.replace(b"\r\n", b"\n")
        elif op == "cr":
            raw = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
        else:
            lines = raw.splitlines(keepends=True)
            if len(lines) > 2:
                i = rng.randrange(len(lines) - 1)
                lines[i], lines[i + 1] = lines[i + 1], lines[i]
            raw = b"".join(lines)
        out.append((f"{path.name} {op} {a}-{b}", raw))
    return out


@pytest.mark.parametrize("leaf_max", [leaves.STREAM_LEAF_IN_MEMORY_MAX, 0])
def test_broken_corpus_mails_stream_as_parse_bytes_reads_them(tmp_path, monkeypatch, leaf_max):
    monkeypatch.setattr(leaves, "STREAM_LEAF_IN_MEMORY_MAX", leaf_max)
    monkeypatch.setattr(lines, "CHUNK", 4096)
    failures, streamed = [], 0
    for name, raw in _mutations(seed=5 if leaf_max else 6, count=250):
        path = tmp_path / "m.eml"
        path.write_bytes(raw)
        result = ParsedMessage()
        try:
            with open(path, "rb") as fh:
                split(fh, result, str(tmp_path), strict=True)
        except Fallback:
            result.cleanup()
            continue  # handed to parse_bytes by parse_file: the same result by construction
        streamed += 1
        if _key(result) != _key(parse_bytes(raw)):
            failures.append(name)
        result.cleanup()
    assert not failures, failures
    assert streamed >= 200
