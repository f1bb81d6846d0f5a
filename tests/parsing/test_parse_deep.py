"""Headers survive any body: a MIME tree too deep for the email package still gives
subject, sender, date and Message-ID (the raw mail is kept as it is)."""
from __future__ import annotations

import pytest

from connections.services.parsing.parse import parse_bytes, parse_file
from connections.services.parsing.results import ParsedMessage


def deep_multipart(levels: int) -> bytes:
    parts = [b"From: Mallory <mallory@example.test>\r\nTo: a@example.test\r\nSubject: =?utf-8?q?deep_tr=C3=A9e?=\r\n"
             b"Date: Sat, 21 Nov 2026 08:00:00 +0000\r\nMessage-ID: <deep@example.test>\r\nMIME-Version: 1.0\r\n"]
    for i in range(levels):
        parts.append(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode())
    parts.append(b"Content-Type: text/plain\r\n\r\nbottom\r\n")
    parts.extend(f"--b{i}--\r\n".encode() for i in reversed(range(levels)))
    return b"".join(parts)


def _check(result: ParsedMessage) -> None:
    assert result.from_header == "Mallory <mallory@example.test>"
    assert "deep tr" in result.subject and result.message_id == "<deep@example.test>"
    assert result.date is not None and result.date.isoformat() == "2026-11-21T08:00:00+00:00"
    assert any("nested too deeply" in p and "headers were read" in p for p in result.problems)


@pytest.mark.smoke
@pytest.mark.parametrize("levels", [2000, 20000])
def test_headers_of_a_too_deep_multipart_in_memory(levels):
    _check(parse_bytes(deep_multipart(levels)))


@pytest.mark.smoke
@pytest.mark.parametrize("levels", [2000, 40000])
def test_headers_of_a_too_deep_multipart_from_a_file(levels, tmp_path):
    path = tmp_path / "deep.eml"
    path.write_bytes(deep_multipart(levels))
    _check(parse_file(str(path), tmpdir=str(tmp_path)))
