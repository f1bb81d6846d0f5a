"""POP3 multi-line reading (read_multiline of connections/mail/pop3_commands.py; no server needed)."""
from __future__ import annotations

import io

import pytest

from connections.mail.pop3_commands import read_multiline


def _read(wire: bytes) -> bytes:
    sink = io.BytesIO()
    reader = io.BufferedReader(io.BytesIO(wire), buffer_size=7)  # tiny buffer: odd boundaries
    written = read_multiline(reader, sink)
    assert written == len(sink.getvalue())
    return sink.getvalue(), reader.read()


def test_read_multiline_unstuffs_dots_and_stops_at_terminator():
    body, rest = _read(b"Subject: x\r\n\r\n..leading dot\r\n...\r\n.\r\n+OK next\r\n")
    assert body == b"Subject: x\r\n\r\n.leading dot\r\n..\r\n"
    assert rest == b"+OK next\r\n"


def test_read_multiline_keeps_line_endings_exactly():
    body, _ = _read(b"a\nb\r\nc\rstill c\r\n\n.\r\n")
    assert body == b"a\nb\r\nc\rstill c\r\n\n"


def test_read_multiline_dot_only_at_line_start_and_long_lines():
    long_line = b"x" * 200_000 + b".\r\n"  # a dot that is not at a line start, after a long line
    body, _ = _read(long_line + b".x\r\n.\r\n")
    assert body == long_line + b"x\r\n"


def test_read_multiline_empty_body_and_bare_lf_terminator():
    assert _read(b".\r\n") == (b"", b"")
    assert _read(b"line\n.\n") == (b"line\n", b"")


def test_read_multiline_drops_the_crlf_the_server_added_only_with_the_list_size():
    def read(wire, size):
        sink = io.BytesIO()
        read_multiline(io.BufferedReader(io.BytesIO(wire), buffer_size=7), sink, size=size)
        return sink.getvalue()

    bare = b"Subject: x\r\n\r\nno final newline"
    ended = b"Subject: x\r\n\r\nwith final newline\r\n"
    assert read(bare + b"\r\n.\r\n", len(bare)) == bare
    assert read(ended + b".\r\n", len(ended)) == ended
    assert read(b"Subject: x\r\n\r\nno final newline\r\n.\r\n", None).endswith(b"newline\r\n")
    big = b"z" * 300_000  # crosses a flush: the last two bytes are held back until the end
    assert read(big + b"\r\n.\r\n", len(big)) == big


def test_read_multiline_raises_when_the_connection_drops():
    with pytest.raises(EOFError):
        _read(b"Subject: x\r\n\r\nbody without terminator\r\n")


def test_read_multiline_streams_big_bodies_in_bounded_pieces():
    writes = []

    class Sink:
        def write(self, data):
            writes.append(len(data))

    line = b"y" * 998 + b"\r\n"
    wire = line * 5000 + b".\r\n"  # 5 MB
    read_multiline(io.BufferedReader(io.BytesIO(wire)), Sink())
    assert sum(writes) == len(line) * 5000
    assert max(writes) < 400_000  # flushed in pieces, never the whole body at once
