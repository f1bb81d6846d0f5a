"""The connection lists and the poll history fit a 1280 px screen, and stay usable on a phone
(Debian's chromium via Playwright; screenshots in test-artifacts/)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from connections.models import PollRun

from . import factories as f
from .test_checklist_browser import ARTIFACTS, browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAGES = {
    "inbound-list": "/admin/connections/inboundconnection/",
    "outbound-list": "/admin/connections/outboundconnection/",
    "pollrun-list": "/admin/connections/pollrun/",
    "dashboard": "/admin/",
}


def _data():
    t = f.tenant("acme-industries", "ACME Industries International")
    f.credential(t, "acme-support-mailbox")
    now = timezone.now()
    conn = f.inbound(t, "support-inbox-eu-west", credential_name="acme-support-mailbox",
                     host="imap.mail.acme-industries.example", last_poll_at=now, last_poll_ok=False,
                     last_error="IMAP imap.mail.acme-industries.example:993: login refused: [AUTHENTICATIONFAILED] "
                                "Authentication failed.", next_poll_at=now + timedelta(minutes=5))
    f.inbound(t, "pop-in", protocol="pop3", post_processing="delete", port=995,
              host="pop.mail.acme-industries.example", credential_name="nope")
    f.outbound(t, "smtp-main", credential_name="acme-support-mailbox", host="smtp.mail.acme-industries.example",
               last_test_ok=False, last_test_summary="SMTP smtp.mail.acme-industries.example:587: failed at tls")
    other = f.tenant("globex", "Globex Corporation")  # two tenants: the tenant column shows
    f.inbound(other, "globex-orders", credential_name="nope")
    f.outbound(other, "globex-smtp", credential_name="nope")
    for i in range(3):
        PollRun.objects.create(tenant=t, connection=conn, started_at=now - timedelta(minutes=i), outcome="failed",
                               fetched=12, stored=10, skipped=1, failed=1, bytes=123456, duration_ms=1234,
                               error="login refused: [AUTHENTICATIONFAILED] Authentication failed.")
    return conn


def test_lists_fit_the_screen(browser, live_server, settings):  # noqa: F811
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    conn = _data()
    pages = {**PAGES, "inbound-page": f"/admin/connections/inboundconnection/{conn.pk}/change/"}
    get_user_model().objects.create_superuser("root", "root@example.com", "a-long-pass-phrase")
    ARTIFACTS.mkdir(exist_ok=True)
    widths, overflow = {}, {}
    for label, width, height in (("desktop", 1280, 900), ("phone", 390, 844)):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.goto(f"{live_server.url}/admin/login/?next=/admin/")
        page.fill("#id_username", "root")
        page.fill("#id_password", "a-long-pass-phrase")
        page.click("input[type=submit]")
        page.wait_for_selector("#tm-dashboard")
        for name, path in pages.items():
            page.goto(live_server.url + path)
            page.screenshot(path=str(ARTIFACTS / f"layout-{label}-{name}.png"), full_page=True)
            widths[(label, name)] = page.evaluate("document.documentElement.scrollWidth")
            if page.locator("svg.tm-diagram").count():  # the whole diagram is on screen, scaled down
                box = page.locator("svg.tm-diagram").bounding_box()
                assert box["x"] >= 0 and box["x"] + box["width"] <= width, (label, box)
            if label == "desktop" and page.locator("#result_list").count():
                # Django lets a wide table scroll inside its box: that is the overflow to avoid.
                overflow[name] = page.evaluate(
                    "(() => { const t = document.querySelector('#result_list');"
                    " return t.scrollWidth - t.parentElement.clientWidth; })()")
        context.close()
    assert overflow and all(v <= 0 for v in overflow.values()), overflow
    for name in pages:
        # Nothing wider than the screen: on a phone the table scrolls inside its own box.
        assert widths[("desktop", name)] <= 1280, (name, widths)
        assert widths[("phone", name)] <= 390, (name, widths)
