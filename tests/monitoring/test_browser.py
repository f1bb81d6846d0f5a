"""A real browser (Debian's chromium) on the operations view: it refreshes itself, shows a
connection turning to failing, and an operator releases a mailbox lock."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from connections.models import InboundConnection, MailboxLock, Membership, PollRun
from tests.browser import ARTIFACTS, launched_chromium

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_operations_view_refreshes_and_releases_a_lock(live_server, settings, tenant):
    settings.SESSION_COOKIE_SECURE = False  # the live server speaks plain HTTP
    settings.CSRF_COOKIE_SECURE = False
    settings.OPERATIONS_REFRESH_SECONDS = 1
    now = timezone.now()
    conn = InboundConnection.objects.create(tenant=tenant, name="orders", host="imap.acme.example", last_poll_at=now,
                                            last_poll_ok=True)
    PollRun.objects.create(tenant=tenant, connection=conn, started_at=now)
    MailboxLock.objects.create(key="imap.acme.example|orders@acme|INBOX", token="t", acquired_at=now,
                               expires_at=now + timedelta(minutes=30), holder="worker-1:4242")
    user = get_user_model().objects.create_user("op", password="a-long-pass-phrase", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role="operator")
    with launched_chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{live_server.url}/admin/login/?next=/admin/connections/alert/operations/")
        page.fill("#id_username", "op")
        page.fill("#id_password", "a-long-pass-phrase")
        page.click("input[type=submit]")
        row = '#tm-connections tr[data-connection="inbound:orders"]'
        page.wait_for_selector(f'{row}[data-state="ok"]')

        # The connection starts failing: the page shows it by itself (no reload by the test).
        InboundConnection.objects.filter(pk=conn.pk).update(last_poll_ok=False, consecutive_failures=3,
                                                            last_error="connection refused")
        page.wait_for_selector(f'{row}[data-state="failing"]', timeout=20000)
        assert "connection refused" in page.inner_text(row)

        lock = '#tm-locks tr[data-lock="imap.acme.example|orders@acme|INBOX"]'
        assert "worker-1:4242" in page.inner_text(lock) and "orders" in page.inner_text(lock)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "operations-view.png"), full_page=True)
        page.click(f'{lock} input[type=submit]')
        page.wait_for_selector("text=released")
        assert not MailboxLock.objects.exists()
