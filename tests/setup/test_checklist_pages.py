"""Small things operators see on the admin pages (issue 7 review): labels, help texts,
one dash for "nothing", dates, states that are not errors, required fields."""
from __future__ import annotations

import html
import re
from datetime import datetime, timezone as dt_timezone

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from connections.models import InboundConnection, OutboundConnection, OutboxMessage, StoredMessage

from . import factories as f

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tenantmail.urls")]


@pytest.fixture
def root(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return user


def test_model_labels_and_help_texts():
    assert StoredMessage._meta.get_field("from_header").verbose_name == "From"
    assert StoredMessage._meta.get_field("reply_to_header").verbose_name == "Reply-To"
    assert OutboundConnection._meta.get_field("smtp_max_size_seen_at").verbose_name == "server SIZE limit seen at"


def test_default_from_help_text_shows_the_address_in_angle_brackets(client, root):
    page = client.get("/admin/connections/outboundconnection/add/").content.decode()
    help_text = re.search(r'id="id_default_from_helptext">\s*<div>(.*?)</div>', page, re.S).group(1)
    # Escaped once in the page: the browser shows <support@acme.example>, not an empty tag.
    assert "&lt;support@acme.example&gt;" in help_text and "<support@" not in help_text


def test_stored_messages_list_says_from(client, root):
    t = f.tenant("acme")
    StoredMessage.objects.create(tenant=t, connection=f.inbound(t), server_key="imap:1:1", from_header="a@b.example",
                                 fetched_at=datetime(2026, 11, 21, tzinfo=dt_timezone.utc), raw="raw/x.eml",
                                 raw_sha256="0" * 64)
    page = client.get("/admin/connections/storedmessage/").content.decode()
    assert re.search(r'column-from_header">.*?<a [^>]*>From</a>', page, re.S)
    assert "From header" not in page


def test_imap_resync_is_a_state_not_a_red_cross(client, root):
    t = f.tenant("acme")
    conn = f.inbound(t)
    # Before the first poll the state means nothing and is not shown (issue 20: forms that fit).
    page = client.get(f"/admin/connections/inboundconnection/{conn.pk}/change/").content.decode()
    assert "field-imap_resync_state" not in page
    InboundConnection.objects.filter(pk=conn.pk).update(last_poll_at=timezone.now())
    page = client.get(f"/admin/connections/inboundconnection/{conn.pk}/change/").content.decode()
    row = re.search(r'field-imap_resync_state.*?</div>\s*</div>', page, re.S).group(0)
    assert "icon-no" not in row and 'data-state="idle"' in row
    InboundConnection.objects.filter(pk=conn.pk).update(imap_resync=True)
    page = client.get(f"/admin/connections/inboundconnection/{conn.pk}/change/").content.decode()
    assert 'data-state="info"' in page and "icon-no.svg" not in re.search(
        r'field-imap_resync_state.*?</div>\s*</div>', page, re.S).group(0)


def test_credential_add_form_marks_the_password_required(client, root):
    page = client.get("/admin/connections/usercredential/add/").content.decode()
    assert re.search(r'<label class="required" for="id_new_password">', page)
    assert re.search(r'<label class="required" for="id_new_password_confirmation">', page)
    t = f.tenant("acme")
    cred = f.credential(t)
    page = client.get(f"/admin/connections/usercredential/{cred.pk}/change/").content.decode()
    assert not re.search(r'<label class="required" for="id_new_password">', page)  # blank keeps it


def _message(t, conn, **kw):
    return OutboxMessage.objects.create(tenant=t, connection=conn, from_address="a@acme.example",
                                        to=["x@y.example"], envelope_to=["x@y.example"], **kw)


def test_outbox_record_dates_dashes_attachments_and_accepted_replies(client, root):
    t = f.tenant("acme")
    conn = f.outbound(t)
    msg = _message(t, conn, status="sent", recipient_results={"x@y.example": {"status": "accepted"}},
                   delivery_log=[{"at": "2026-11-21T09:37:05+00:00", "outcome": "sent", "code": None,
                                  "detail": "accepted for 1 of 1 recipients"}],
                   sent_at=datetime(2026, 11, 21, 9, 37, 5, tzinfo=dt_timezone.utc))
    page = html.unescape(client.get(f"/admin/connections/outboxmessage/{msg.pk}/change/").content.decode())
    assert "Attachments" not in page and "outboxattachment" not in page.lower()  # no empty table
    assert "2026-11-21 09:37:05" in page  # the event time in the one format
    # a record from before the server's replies were kept (issue 19) says so
    assert "accepted (recorded before replies were kept): sent 2026-11-21 09:37, accepted for 1 of 1 recipients" in page
    # One dash for "nothing": Django's "-" is not used next to our "–".
    cells = re.findall(r'<div class="readonly">(.*?)</div>', page, re.S)
    assert "–" in cells and "-" not in cells, cells


def test_django_date_cells_use_the_same_format(client, root, settings):
    # settings.FORMAT_MODULE_PATH = ["tenantmail.formats"] (the lead wires it in tenantmail/settings.py).
    from django.utils import formats

    settings.FORMAT_MODULE_PATH = ["tenantmail.formats"]
    formats.reset_format_cache()
    t = f.tenant("acme")
    conn = f.outbound(t)
    _message(t, conn, status="sent", sent_at=datetime(2026, 11, 21, 9, 37, tzinfo=dt_timezone.utc))
    page = client.get("/admin/connections/outboxmessage/").content.decode()
    formats.reset_format_cache()  # the next test gets its own settings' formats
    assert "2026-11-21 09:37" in page and "a.m." not in page and "p.m." not in page


def test_connectivity_panel_uses_the_one_format(client, root):
    t = f.tenant("acme")
    conn = f.outbound(t, last_test_at=datetime(2026, 11, 21, 9, 37, 5, tzinfo=dt_timezone.utc))
    page = client.get(f"/admin/connections/outboundconnection/{conn.pk}/change/").content.decode()
    assert "Passed</strong>\n      on 2026-11-21 09:37:05: " in page
