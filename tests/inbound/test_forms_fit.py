"""Forms that fit (issue 20, item 4): fields that do not apply are hidden (JavaScript) and,
with or without JavaScript, ignored and cleared by the server."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from connections.models import InboundConnection, OutboundConnection

from ..browser import ARTIFACTS, launched_chromium, sign_in
from .test_admin_references import _form


def test_what_does_not_apply_is_cleared_by_the_server(admin_client, tenant, make_credential):
    cred = make_credential()
    data = {**_form(tenant, cred), "protocol": "pop3", "post_processing": "delete", "folder": "Junk",
            "selection": "all", "archive_folder": "Old", "schedule_kind": "interval",
            "schedule_cron": "not a cron expression", "schedule_weekdays": "9,9", "schedule_start_hour": 30}
    response = admin_client.post(reverse("admin:connections_inboundconnection_add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    conn = InboundConnection.objects.get(name="new-in")
    assert (conn.folder, conn.selection, conn.archive_folder) == ("INBOX", "unread", "")
    assert (conn.schedule_cron, conn.schedule_weekdays, conn.schedule_start_hour) == ("", "0,1,2,3,4", 0)
    assert conn.credential_name == cred and conn.schedule_every == 300

    # Cron: the interval and weekday fields do not apply; authentication none: no credential.
    data = {**data, "protocol": "imap", "post_processing": "mark_read", "schedule_kind": "cron",
            "schedule_cron": "*/10 * * * *", "schedule_every": "x", "authentication": "none",
            "protection": "ssl_tls"}
    response = admin_client.post(reverse("admin:connections_inboundconnection_change", args=[conn.pk]), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    conn.refresh_from_db()
    assert (conn.schedule_kind, conn.schedule_cron, conn.schedule_every) == ("cron", "*/10 * * * *", 300)
    assert conn.credential_name == "" and conn.folder == "Junk"  # IMAP: the folder applies again


def test_dependent_fields_are_marked_and_imap_state_waits_for_a_poll(admin_client, tenant, make_credential):
    conn = InboundConnection.objects.create(tenant=tenant, name="in", host="h", protocol="pop3",
                                            credential_name=make_credential())
    html = admin_client.get(reverse("admin:connections_inboundconnection_change", args=[conn.pk])).content.decode()
    assert 'data-tm-when="protocol:imap"' in html and 'data-tm-when="schedule_kind:cron"' in html
    assert 'data-tm-when="post_processing:move|move_and_mark_read"' in html
    assert "connections/disclosure.js" in html
    assert "IMAP re-sync" not in html and "field-imap_uidvalidity" not in html
    InboundConnection.objects.filter(pk=conn.pk).update(protocol="imap", last_poll_at=timezone.now())
    html = admin_client.get(reverse("admin:connections_inboundconnection_change", args=[conn.pk])).content.decode()
    assert "IMAP re-sync" in html
    out = OutboundConnection.objects.create(tenant=tenant, name="o", host="h", default_from="a@example.test")
    html = admin_client.get(reverse("admin:connections_outboundconnection_change", args=[out.pk])).content.decode()
    assert 'data-tm-when="authentication:plain|encrypted"' in html


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_rows_hide_and_show_in_chromium(live_server, settings, tenant):
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    get_user_model().objects.create_superuser("root", "root@example.com", "a-long-pass-phrase")
    with launched_chromium() as browser:
        page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
        sign_in(page, live_server.url, "root", "a-long-pass-phrase", "/admin/connections/inboundconnection/add/")
        page.wait_for_selector("#id_protocol")

        def visible(field: str) -> bool:
            return page.is_visible(f"#id_{field}")

        assert visible("schedule_every") and not visible("schedule_cron") and not visible("schedule_weekdays")
        page.select_option("#id_schedule_kind", "cron")
        assert visible("schedule_cron") and not visible("schedule_every")
        page.select_option("#id_schedule_kind", "weekly")
        assert visible("schedule_weekdays") and visible("schedule_start_hour") and visible("schedule_every")
        assert visible("folder") and not visible("archive_folder")
        page.select_option("#id_post_processing", "move")
        assert visible("archive_folder")
        page.select_option("#id_protocol", "pop3")
        assert not visible("folder") and not visible("selection")
        page.select_option("#id_authentication", "none")
        assert not visible("credential_name")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "forms-fit-pop3.png"), full_page=True)
