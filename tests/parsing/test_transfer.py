"""transfer: clean base64 decoded in one call, exactly as binascii's strict mode."""
from __future__ import annotations


def test_clean_base64_shortcut_equals_strict_binascii():
    """What b64_clean decodes, it decodes as binascii's strict mode does (line breaks removed); the rest it declines."""
    import base64
    import binascii
    import os

    from connections.services.parsing.transfer import b64_clean

    blob = os.urandom(30_001)
    good = [base64.encodebytes(blob).replace(b"\n", b"\r\n"), base64.encodebytes(blob), base64.b64encode(blob),
            base64.encodebytes(blob[:3000]), base64.encodebytes(blob[:3001]), base64.encodebytes(blob[:3002]) + b"\r\n\r\n"]
    for text in good:
        expected = binascii.a2b_base64(text.translate(None, b"\r\n"), strict_mode=True)
        assert b64_clean(text) == expected
        framed = b"--b\r\nContent-Type: a/b\r\n\r\n" + text + b"\r\n--b--\r\n"  # a range of a bigger buffer
        assert b64_clean(framed, framed.index(text), framed.index(text) + len(text)) == expected
    bad = [good[0][:100] + b" " + good[0][100:], good[0][:100] + b"!" + good[0][101:], good[0][:-5],
           b"YW==YWJj\r\n", good[0][:100] + b"-_" + good[0][102:], good[0][:100] + b"\xc3\xa9" + good[0][102:],
           b"YWJjZA=\r\n=\r\n"]
    for text in bad:
        assert b64_clean(text) is None, text[:120]
