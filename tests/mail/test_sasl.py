"""SASL messages of connections/mail/sasl.py (no server needed)."""
from __future__ import annotations

import base64

from connections.mail.sasl import cram_md5_response, sasl_plain


def test_cram_md5_response_matches_rfc2195_example():
    challenge = base64.b64decode("PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+")
    assert challenge == b"<1896.697170952@postoffice.reston.mci.net>"
    response = cram_md5_response("tim", "tanstaaftanstaaf", challenge)
    assert response == b"tim b913a602c7eda7a495b4e6e7334d3890"
    assert base64.b64encode(response) == b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"


def test_cram_md5_and_plain_use_utf8_bytes():
    response = cram_md5_response("jürgen", "pässwört", b"<1.2@x>")
    assert response.startswith("jürgen ".encode())
    import hmac

    assert response.split(b" ")[1] == hmac.new("pässwört".encode(), b"<1.2@x>", "md5").hexdigest().encode()
    assert sasl_plain("jürgen", "€uro") == b"\0j\xc3\xbcrgen\0\xe2\x82\xacuro"
