"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, with watchers.

Every page records: dialogs (alert/confirm/prompt), console messages, and every request;
requests to any host other than the live server are recorded and aborted, so a test can
prove that nothing left for an outside host.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlparse

import pytest
from django.conf import settings

from ..browser import ARTIFACTS, launched_chromium


@dataclass
class Watch:
    origin: str
    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    responses: list[tuple[str, int, str]] = field(default_factory=list)

    def is_local(self, url: str) -> bool:
        parsed = urlparse(url)
        if parsed.scheme in {"data", "about", "blob"}:
            return True
        return f"{parsed.scheme}://{parsed.netloc}" == self.origin


@pytest.fixture(scope="module")
def chromium():
    with launched_chromium() as b:
        yield b


def open_context(browser, live_server, user=None, *, color_scheme: str = "light", width: int = 1100):
    """A fresh browser context signed in as `user`, and its Watch."""
    from django.test import Client

    origin = live_server.url.rstrip("/")
    watch = Watch(origin=origin)
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=color_scheme)
    if user is not None:
        client = Client()
        client.force_login(user)
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME,
                              "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                              "url": origin}])

    def route(route_, request):
        if watch.is_local(request.url):
            route_.continue_()
        else:
            watch.outside.append(request.url)
            route_.abort()

    context.route("**/*", route)

    def on_page(page):
        page.on("dialog", lambda d: (watch.dialogs.append(f"{d.type}: {d.message}"), d.dismiss()))
        page.on("console", lambda m: watch.console.append(m.text))
        page.on("request", lambda r: watch.requests.append(r.url))
        page.on("response", lambda r: watch.responses.append((r.url, r.status, r.headers.get("content-type", ""))))

    context.on("page", on_page)
    return context, watch


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
