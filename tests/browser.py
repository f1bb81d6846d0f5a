"""Debian's chromium driven by Playwright, shared by the browser tests.

Playwright's own browser download does not work here; the tests launch /usr/bin/chromium
(or TENANTMAIL_CHROMIUM) with the flags that keep it off the network.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from django.conf import settings
from django.db import connections as db_connections

CHROMIUM = os.environ.get("TENANTMAIL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"


@contextmanager
def launched_chromium() -> Iterator:
    """A headless chromium for the duration of the block."""
    # Playwright's sync API keeps an event loop in this thread; Django's ORM would refuse
    # to run next to it in the test code without this flag (tests only).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: apt-get install chromium (scripts/test does this).")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                yield browser
            finally:
                # Inside Playwright's context the tests got database connections of their own (not
                # the ones of pytest-django's teardown): close them, or the test database stays in use.
                db_connections.close_all()
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def sign_in(page, base_url: str, username: str, password: str, next_path: str = "/admin/") -> None:
    """Sign in to the admin through its login form, landing on `next_path`."""
    page.goto(f"{base_url}/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
