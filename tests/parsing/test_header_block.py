"""header_block: a plain header section built as the email package's header parser builds it."""
from __future__ import annotations

from tests.mailcorpus import corpus_files


def test_header_block_shortcut_equals_the_header_parser():
    """header_block builds what BytesHeaderParser makes of a header section, or gives up."""
    from email import policy
    from email.parser import BytesHeaderParser

    from connections.services.parsing.header_block import find_header_end, header_block

    def same(block: bytes) -> bool | None:
        fast = header_block(block, 0, len(block))
        if fast is None:
            return None
        ref = BytesHeaderParser(policy=policy.compat32).parsebytes(block)
        assert (fast._headers, fast._payload, fast._unixfrom, fast.defects, fast.get_default_type()) == (
            ref._headers, ref._payload, ref._unixfrom, ref.defects, ref.get_default_type()), block
        return True

    built = 0
    for path in corpus_files():
        raw = path.read_bytes()
        found = find_header_end(raw, 0, len(raw))
        if found and same(raw[:found[0]]):
            built += 1
    assert built > 150
    assert same(b"Subject: a\r\n  folded\r\n\tmore\r\nX-Bytes: caf\xc3\xa9 \xff\r\nTo:b\r\nX-Empty:\r\n")
    assert same(b"Subject: vertical \x0b tab and \x0c feed stay in the value\n")
    assert same(b"")
    # What feedparser treats specially is left to it.
    for odd in (b"From someone Sat Nov 21 2026\r\nSubject: a\r\n", b" continuation first\r\nA: b\r\n",
                b"A: b\rB: lone CR\r\n", b"Subject : space before the colon\r\n", b": no name\r\n",
                b"no colon at all\r\n"):
        assert header_block(odd, 0, len(odd)) is None, odd
