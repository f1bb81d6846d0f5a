"""Content-Security-Policy for the message pages.

A decorator rather than a global middleware: each kind of response gets the policy it
needs, and nothing outside /messages/ (the admin) changes.
"""
from __future__ import annotations

from functools import wraps
from typing import Callable

from django.http import HttpRequest, HttpResponse

# Pages: no script at all, styles and images only from us, frames only from us.
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Files we hand out (attachments, raw source, inline images): never a document that
# can run anything, even when opened directly.
FILE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'self'; sandbox"


def frame_policy(*, load_remote: bool) -> str:
    """The sanitised HTML body: framed by our own pages only, sandboxed even when opened alone.

    The CSP `sandbox` directive mirrors the iframe's sandbox attribute: no scripts, no
    forms; links may open a new tab; same-origin so that cid: images keep the session.
    """
    images = "'self' data:" + (" https: http:" if load_remote else "")
    return (
        f"default-src 'none'; img-src {images}; style-src 'unsafe-inline'; font-src 'none'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
        "sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox"
    )


def content_security_policy(policy: str = PAGE_POLICY) -> Callable:
    """Set `policy` on the view's responses unless the view set its own."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            response = view(request, *args, **kwargs)
            response.headers.setdefault("Content-Security-Policy", policy)
            return response

        return wrapped

    return decorator
