"""Transfer decoding beside the email package's: clean base64 of a range of a buffer in one
SIMD call, and base64 / quoted-printable decoded chunk by chunk (a part read from a file)."""
from __future__ import annotations

import binascii
import quopri
import re
from typing import Iterator

import pybase64

_B64_BODY = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


def _uniform_line_breaks(raw: bytes, start: int, end: int) -> int | None:
    """The CR/LF count of raw[start:end] when it is lines of one length ending in CRLF (as
    every MIME encoder writes base64), found by looking at the line ends only; None when
    the lines are not uniform. A stray CR or LF inside a line is not counted: for
    b64_clean it is a character its decoder skips, so the length check rejects the data."""
    first = raw.find(b"\r\n", start, end)
    if first <= start:
        return None
    stride = first - start + 2
    full = (end - start) // stride  # lines that fit whole, with their CRLF
    stop = start + full * stride
    if raw[first:stop:stride].count(b"\r") != full or raw[first + 1:stop:stride].count(b"\n") != full:
        return None
    return 2 * full + raw.count(b"\r", stop, end) + raw.count(b"\n", stop, end)


def b64_clean(raw: bytes, start: int = 0, end: int | None = None) -> bytes | None:
    """Decode raw[start:end] if it is base64 made only of the alphabet and CR/LF line
    breaks, with padding only at the end — binascii's strict mode after removing the line
    breaks, at SIMD speed, without copying the slice. None for anything else (the email
    package's lenient rules then decode it and report defects)."""
    end = len(raw) if end is None else end
    last = end
    while last > start and raw[last - 1] in b"\r\n":
        last -= 1
    pad = raw.find(b"=", start, last)
    if pad != -1 and raw[pad:last] not in (b"=", b"=="):
        return None
    padding = last - pad if pad != -1 else 0
    try:
        data = pybase64.b64decode(memoryview(raw)[start:end], validate=False)  # skips the line breaks
    except (binascii.Error, ValueError):
        return None
    # The decoder skipped the line breaks and any other character: the data is clean when
    # what remains after the line breaks decoded whole. The line breaks are counted from
    # the line ends when the lines are uniform (cheap), else byte by byte.
    for count in (_uniform_line_breaks, _all_line_breaks):
        breaks = count(raw, start, end)
        if breaks is None:
            continue
        chars = end - start - breaks
        if chars % 4 == 0 and len(data) == chars // 4 * 3 - padding:
            return data
    return None


def _all_line_breaks(raw: bytes, start: int, end: int) -> int:
    return raw.count(b"\r", start, end) + raw.count(b"\n", start, end)



class Base64Sink:
    """decode_b's result (the email package's base64 decoding) computed chunk by chunk:
    clean base64 only (anything else makes `invalid` true and is left to the email package)."""

    def __init__(self) -> None:
        self.rest = b""
        self.pads = 0
        self.invalid = False

    def feed(self, chunk: bytes) -> bytes:
        chunk = chunk.translate(None, b"\r\n")
        if not chunk or self.invalid:
            return b""
        if self.pads:  # after padding only more padding may follow (split across chunks)
            self.pads += len(chunk)
            self.rest += chunk
            if chunk.strip(b"=") or self.pads > 2:
                self.invalid = True
            return b""
        if not _B64_BODY.fullmatch(chunk):
            self.invalid = True  # non-alphabet characters or padding in the middle
            return b""
        self.pads = len(chunk) - len(chunk.rstrip(b"="))
        data = self.rest + chunk
        body = len(data) - self.pads
        usable = body - body % 4  # the padded last group waits for close()
        self.rest = data[usable:]
        try:
            return binascii.a2b_base64(data[:usable])
        except binascii.Error:
            self.invalid = True
            return b""

    def close(self) -> tuple[bytes, bool]:
        """(the last bytes, whether padding was missing)."""
        if self.invalid or not self.rest:
            return b"", False
        missing = -len(self.rest) % 4
        if self.pads + missing > 2:
            self.invalid = True
            return b"", False
        try:
            return binascii.a2b_base64(self.rest + b"=" * missing), missing > 0
        except binascii.Error:
            self.invalid = True
            return b"", False



def lenient_b64(chunks: Iterator[bytes]) -> Iterator[bytes]:
    rest = b""
    for chunk in chunks:
        data = rest + re.sub(rb"[^A-Za-z0-9+/]", b"", chunk)
        usable = len(data) - len(data) % 4
        rest = data[usable:]
        yield binascii.a2b_base64(data[:usable])
    if len(rest) > 1:
        yield binascii.a2b_base64(rest + b"=" * (-len(rest) % 4))



def quoted_printable(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """quopri.decodestring of the joined chunks, a line-complete piece at a time."""
    rest = b""
    for chunk in chunks:
        chunk = rest + chunk
        cut = chunk.rfind(b"\n") + 1
        rest = chunk[cut:]
        yield quopri.decodestring(chunk[:cut])
    yield quopri.decodestring(rest)
