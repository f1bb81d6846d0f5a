"""Every form a leaked password could take in text: raw, escaped, encoded."""
from __future__ import annotations

import base64
import html
import json
from urllib.parse import quote, quote_plus

from django.utils.html import escape


def forms_of(secret: str) -> dict[str, str]:
    raw = secret.encode()
    found = {
        "plain": secret,
        "stripped": secret.strip(),
        "html-escaped (django)": str(escape(secret)),
        "html-escaped (stdlib)": html.escape(secret),
        "url-encoded": quote(secret, safe=""),
        "url-encoded (plus)": quote_plus(secret),
        "base64": base64.b64encode(raw).decode(),
        "base64 (urlsafe)": base64.urlsafe_b64encode(raw).decode(),
        "json": json.dumps(secret)[1:-1],
        "json (unicode)": json.dumps(secret, ensure_ascii=False)[1:-1],
        "repr": repr(secret)[1:-1],
        "ascii repr": ascii(secret)[1:-1],
    }
    # A distinctive core, in case only part of it is shown.
    core = secret.strip().split(" ")[0]
    if len(core) >= 6:
        found["core"] = core
        found["core html-escaped"] = str(escape(core))
        found["core url-encoded"] = quote(core, safe="")
    return found


def leaks(text: str | bytes, secret: str) -> list[str]:
    """Names of the forms of `secret` that occur in `text`."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [name for name, form in forms_of(secret).items() if form and form in text]
