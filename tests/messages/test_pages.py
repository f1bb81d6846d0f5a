"""List, search, filters, keyset pages, detail, downloads and the security headers."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from connections.models import InboundConnection
from connections.services.messages import queries, search

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def many(tenants, store, build):
    """30 Acme messages one hour apart (newest = index 29), every third with a file."""
    conn2 = InboundConnection.objects.create(tenant=tenants["acme"], name="acme-sales", host="imap.acme.test")
    rows = []
    for i in range(30):
        raw = build(subject=f"Report number {i:02d}", sender=f"Sender {i} <s{i}@example.com>",
                    text=f"body words {'needle' if i % 5 == 0 else 'hay'} item{i:02d}",
                    attachments=[("f.txt", "text/plain", b"x")] if i % 3 == 0 else [])
        rows.append(store(connection=conn2 if i % 2 else tenants["conn_a"], raw=raw,
                          date=T0 + dt.timedelta(hours=i), fetched_at=T0 + dt.timedelta(days=30)))
    return {"rows": rows, "conn2": conn2}


def subjects(response) -> list[str]:
    return re.findall(r"Report number (\d\d)", response.content.decode())


def test_newest_first_and_keyset_pages_both_ways(client, tenants, many, monkeypatch):
    client.force_login(tenants["alice"])
    seen, url, pages = [], reverse("messages:list"), []
    page = queries.list_messages(user=tenants["alice"], page_size=7)
    while True:
        pages.append(page)
        seen += [r.subject for r in page.rows]
        if not page.older:
            break
        page = queries.list_messages(user=tenants["alice"], page_size=7, older_than=page.older)
    assert seen == [f"Report number {i:02d}" for i in range(29, -1, -1)]  # no gap, no duplicate
    assert len(pages) == 5 and pages[0].newer is None and pages[-1].older is None
    # And back again from the last page.
    back = queries.list_messages(user=tenants["alice"], page_size=7, newer_than=pages[-1].newer)
    assert [r.subject for r in back.rows] == [r.subject for r in pages[-2].rows]
    # Through the view: the "Older" and "Newer" links lead to the neighbouring pages.
    monkeypatch.setattr(queries, "PAGE_SIZE", 10)
    first = client.get(url, {"q": "report"})
    assert subjects(first)[:3] == ["29", "28", "27"]
    older = re.search(r'href="(\?[^"]*older=[^"]+)"', first.content.decode())[1].replace("&amp;", "&")
    assert "q=report" in older  # filters are kept
    second = client.get(url + older)
    assert subjects(second) == [f"{i:02d}" for i in range(19, 9, -1)]
    newer = re.search(r'href="(\?[^"]*newer=[^"]+)"', second.content.decode())[1].replace("&amp;", "&")
    assert subjects(client.get(url + newer)) == [f"{i:02d}" for i in range(29, 19, -1)]
    assert client.get(url, {"older": "garbage"}).status_code == 200  # a bad cursor shows page 1


def test_equal_dates_page_by_id(tenants, store, build):
    same = T0
    for i in range(9):
        store(connection=tenants["conn_a"], raw=build(subject=f"same {i}"), date=same, fetched_at=same)
    first = queries.list_messages(user=tenants["alice"], page_size=4)
    second = queries.list_messages(user=tenants["alice"], page_size=4, older_than=first.older)
    third = queries.list_messages(user=tenants["alice"], page_size=4, older_than=second.older)
    got = [r.subject for p in (first, second, third) for r in p.rows]
    assert got == [f"same {i}" for i in range(8, -1, -1)]


def test_future_and_missing_dates_sort_by_fetch_time(tenants, store, build):
    now = timezone.now()
    store(connection=tenants["conn_a"], raw=build(subject="from the future"),
          date=now + dt.timedelta(days=3650), fetched_at=now - dt.timedelta(days=2))
    store(connection=tenants["conn_a"], raw=build(subject="no date"), date=None, fetched_at=now - dt.timedelta(days=1))
    store(connection=tenants["conn_a"], raw=build(subject="fresh"), date=now, fetched_at=now)
    rows = queries.list_messages(user=tenants["alice"]).rows
    assert [r.subject for r in rows] == ["fresh", "no date", "from the future"]


def test_search_subject_sender_body_and_phrases(tenants, many):
    def find(q):
        return sorted(r.subject[-2:] for r in queries.list_messages(
            user=tenants["alice"], filters=search.MessageFilters(query=q)).rows)

    assert find("needle") == ["00", "05", "10", "15", "20", "25"]  # text body
    assert find("NUMBER 07") == ["07"]                             # subject, any case, both words
    assert find("s13@example") == ["13"]                           # sender
    assert find('"Report number 2"') == [f"2{i}" for i in range(10)]
    assert find("needle item2") == ["20", "25"]                    # every term must match
    assert find("nothing-like-this") == []


def test_search_finds_words_of_html_only_mails(tenants, store, build):
    store(connection=tenants["conn_a"], raw=build(subject="Newsletter", text=None, html="<p>Our <b>autumn</b> sale</p>"))
    store(connection=tenants["conn_a"], raw=build(subject="Both", text="plain words", html="<p>autumn only in html</p>"))

    def find(q):
        return [r.subject for r in queries.list_messages(user=tenants["alice"], filters=search.MessageFilters(query=q)).rows]

    assert find("autumn") == ["Newsletter"]  # a mail with a text part is searched in its text
    assert find("AUTUMN sale") == ["Newsletter"]


def test_filters_connection_dates_attachments(client, tenants, many):
    alice = tenants["alice"]

    def got(**kw):
        return sorted(int(r.subject[-2:]) for r in queries.list_messages(user=alice, filters=search.MessageFilters(**kw)).rows)

    assert got(connection_id=many["conn2"].pk) == [i for i in range(30) if i % 2]
    assert got(has_attachments=True) == [i for i in range(30) if i % 3 == 0]
    assert got(has_attachments=False) == [i for i in range(30) if i % 3]
    # T0 is 12:00 UTC on Nov 1: hours 0..11 are Nov 1, 12..29 Nov 2.
    assert got(date_from=dt.date(2026, 11, 2)) == list(range(12, 30))
    assert got(date_to=dt.date(2026, 11, 1)) == list(range(0, 12))
    # Through the query string, with a bad date reported rather than failing.
    client.force_login(alice)
    response = client.get(reverse("messages:list"), {"attachments": "yes", "connection": many["conn2"].pk, "from": "nope"})
    assert sorted(int(s) for s in subjects(response)) == [i for i in range(30) if i % 6 == 3]
    assert "is not a date" in response.content.decode()


def test_list_page_security_headers_and_markup(client, tenants, many):
    client.force_login(tenants["alice"])
    response = client.get(reverse("messages:list"))
    csp = response["Content-Security-Policy"]
    for directive in ("default-src 'none'", "style-src 'self'", "img-src 'self'", "frame-src 'self'",
                      "form-action 'self'", "base-uri 'none'", "frame-ancestors 'none'"):
        assert directive in csp
    assert "script" not in response.content.decode().lower().replace("description", "")
    assert response["X-Frame-Options"] == "DENY"
    assert "no-store" in response["Cache-Control"]
    css = client.get(reverse("messages:stylesheet"))
    assert css.status_code == 200 and css["Content-Type"].startswith("text/css")


def test_detail_headers_problems_and_frame(client, tenants, store, build):
    raw = build(subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Köln", sender="=?utf-8?q?J=C3=B6rg?= <jorg@example.com>",
                text="plain part", html='<p onclick="x()">Hi <img src="http://tracker.example/p.gif"></p>')
    message = store(connection=tenants["conn_a"], raw=raw, parse_problems=["part 1.2: unknown charset 'x-foo'"])
    client.force_login(tenants["alice"])
    page = client.get(reverse("messages:detail", args=[message.pk])).content.decode()
    assert "Grüße aus Köln" in page and "Jörg" in page
    assert "unknown charset" in page and "Parse problems" in page
    assert "1 remote image blocked" in page and "?remote=1" in page
    assert 'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"' in page
    assert "allow-scripts" not in page and "allow-forms" not in page
    assert "All headers" in page and "Message-ID" in page

    body = client.get(reverse("messages:body", args=[message.pk]))
    assert body["X-Frame-Options"] == "SAMEORIGIN"
    csp = body["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "img-src 'self' data:;" in csp and "sandbox" in csp
    assert "frame-ancestors 'self'" in csp and "allow-scripts" not in csp
    html = body.content.decode()
    assert "onclick" not in html and "tracker.example" not in html
    remote = client.get(reverse("messages:body", args=[message.pk]), {"remote": "1"})
    assert "tracker.example" in remote.content.decode()
    assert "img-src 'self' data: https: http:" in remote["Content-Security-Policy"]


def test_cid_images_point_at_stored_inline_attachments(client, tenants, store, build):
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 20
    raw = build(html='<p><img src="cid:logo@x" alt="logo"><img src="cid:svg@x"><img src="cid:missing@x"></p>',
                inline=[("logo@x", "image/png", png), ("svg@x", "image/svg+xml", b"<svg onload='alert(1)'/>")])
    message = store(connection=tenants["conn_a"], raw=raw)
    png_att = message.attachments.get(content_type="image/png")
    svg_att = message.attachments.get(content_type="image/svg+xml")
    client.force_login(tenants["alice"])
    html = client.get(reverse("messages:body", args=[message.pk])).content.decode()
    inline_url = reverse("messages:inline", args=[message.pk, png_att.pk])
    assert f'src="{inline_url}"' in html
    assert "cid:" not in html and reverse("messages:inline", args=[message.pk, svg_att.pk]) not in html
    image = client.get(inline_url)
    assert image["Content-Type"] == "image/png" and b"".join(image.streaming_content) == png
    assert image["X-Content-Type-Options"] == "nosniff"
    # SVG is never served inline (it could carry script when opened directly).
    assert client.get(reverse("messages:inline", args=[message.pk, svg_att.pk])).status_code == 404


def test_attachment_download_headers(client, tenants, store, build):
    raw = build(attachments=[("Prüfbericht 2026.pdf", "application/pdf", b"%PDF-1.4 data"),
                             ('"><script>alert(1)</script>.html', "text/html", b"<script>alert(1)</script>"),
                             ("../../etc/passwd", "application/octet-stream", b"root:x")])
    message = store(connection=tenants["conn_a"], raw=raw)
    client.force_login(tenants["alice"])
    got = {}
    for att in message.attachments.all():
        response = client.get(reverse("messages:attachment", args=[message.pk, att.pk]))
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Type"] == att.content_type  # the stored type, as stored
        assert response["Content-Disposition"].startswith("attachment; ")
        assert "sandbox" in response["Content-Security-Policy"]
        got[att.content_type] = (response["Content-Disposition"], b"".join(response.streaming_content))
    disposition, data = got["application/pdf"]
    assert disposition == ("attachment; filename=\"Prufbericht 2026.pdf\"; "
                           "filename*=UTF-8''Pr%C3%BCfbericht%202026.pdf")
    assert data == b"%PDF-1.4 data"
    disposition, _ = got["text/html"]
    assert "<" not in disposition and '"' not in disposition.split('filename="')[1].rstrip('"').split('";')[0]
    disposition, data = got["application/octet-stream"]
    assert disposition == 'attachment; filename="passwd"' and data == b"root:x"


def test_source_and_raw_download(client, tenants, store, build):
    raw = build(subject="Ünïcödé", text="Grüße")
    message = store(connection=tenants["conn_a"], raw=raw)
    client.force_login(tenants["alice"])
    source = client.get(reverse("messages:source", args=[message.pk]))
    assert source["Content-Type"] == "text/plain; charset=utf-8"
    assert source["Content-Disposition"].startswith("inline;")
    assert b"".join(source.streaming_content) == raw
    eml = client.get(reverse("messages:raw", args=[message.pk]))
    assert eml["Content-Type"] == "message/rfc822" and eml["X-Content-Type-Options"] == "nosniff"
    assert eml["Content-Disposition"] == f'attachment; filename="message-{message.pk}.eml"'
    assert b"".join(eml.streaming_content) == raw
    # 8-bit Latin-1 source is labelled so that every byte shows.
    latin = store(connection=tenants["conn_a"], raw=b"Subject: caf\xe9\r\n\r\ncaf\xe9\r\n")
    assert client.get(reverse("messages:source", args=[latin.pk]))["Content-Type"] == "text/plain; charset=iso-8859-1"


def test_missing_raw_file_is_404_not_500(client, tenants, store, build):
    message = store(connection=tenants["conn_a"], raw=build())
    message.raw.storage.delete(message.raw.name)
    client.force_login(tenants["alice"])
    assert client.get(reverse("messages:raw", args=[message.pk])).status_code == 404
    assert client.get(reverse("messages:detail", args=[message.pk])).status_code == 200


def test_list_query_count_is_constant(client, tenants, many, django_assert_max_num_queries):
    client.force_login(tenants["alice"])
    client.get(reverse("messages:list"))
    with django_assert_max_num_queries(6):  # session, user, roles, messages, connections
        client.get(reverse("messages:list"), {"q": "report", "attachments": "yes"})


def test_connection_menu_is_capped_but_keeps_the_selected_one(client, tenants, monkeypatch):
    for i in range(5):
        InboundConnection.objects.create(tenant=tenants["acme"], name=f"box-{i}", host="imap.acme.test")
    last = InboundConnection.objects.filter(tenant=tenants["acme"]).order_by("name").last()
    monkeypatch.setattr(queries, "MAX_FILTER_CONNECTIONS", 3)
    names = [c["name"] for c in queries.visible_connections(user=tenants["alice"])]
    assert names == ["acme-inbox", "box-0", "box-1"]
    with_selected = queries.visible_connections(user=tenants["alice"], selected=last.pk)
    assert with_selected[-1]["id"] == last.pk and len(with_selected) == 4
    # Another tenant's connection id is never added, even when "selected".
    assert all(c["id"] != tenants["conn_b"].pk for c in queries.visible_connections(user=tenants["alice"], selected=tenants["conn_b"].pk))
    client.force_login(tenants["alice"])
    page = client.get(reverse("messages:list"), {"connection": last.pk}).content.decode()
    assert f'<option value="{last.pk}" selected>{last.name}</option>' in page


def test_cursor_round_trip_is_exact():
    for when in (dt.datetime(2026, 11, 21, 9, 3, 7, 999999, tzinfo=dt.timezone.utc),
                 dt.datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=dt.timezone.utc),
                 dt.datetime(2099, 1, 1, 0, 0, 0, 123457, tzinfo=dt.timezone.utc)):
        cursor = queries.Cursor(sort_at=when, id=42)
        assert queries.Cursor.decode(cursor.encode()) == cursor
    for junk in ("", "x-1", "1-", "99999999999999999999-1", "1-2-3"):
        assert queries.Cursor.decode(junk) is None


def test_list_rows_show_from_subject_date_connection_and_attachment_mark(client, tenants, many):
    client.force_login(tenants["alice"])
    html = client.get(reverse("messages:list")).content.decode()
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    assert len(rows) == 30
    for row in rows:
        i = int(re.search(r"Report number (\d\d)", row)[1])
        assert f">Sender {i}</td>" in row and f'title="s{i}@example.com"' in row
        assert "2026-11-0" in row and '<time datetime="2026-11-0' in row
        assert ("acme-sales" if i % 2 else "acme-inbox") in row
        marked = "Has attachments" in row
        assert marked is (i % 3 == 0), (i, row)


def test_misspelled_image_types_show_inline_under_their_registered_name(client, tenants, store, build):
    """Some mail programs label JPEGs "image/jpg": the picture still shows, as image/jpeg."""
    jpeg = b"\xff\xd8\xff\xe0" + b"0" * 20
    raw = build(html='<p><img src="cid:photo@x" alt="photo"></p>', inline=[("photo@x", "image/jpg", jpeg)])
    message = store(connection=tenants["conn_a"], raw=raw)
    att = message.attachments.get()
    client.force_login(tenants["alice"])
    url = reverse("messages:inline", args=[message.pk, att.pk])
    assert f'src="{url}"' in client.get(reverse("messages:body", args=[message.pk])).content.decode()
    image = client.get(url)
    assert image.status_code == 200 and image["Content-Type"] == "image/jpeg"
    assert b"".join(image.streaming_content) == jpeg


def test_every_response_carries_a_strict_csp(client, tenants, store, build):
    """default-src 'none' and a frame-ancestors rule on every page and file, no script source."""
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 20
    message = store(connection=tenants["conn_a"], raw=build(
        html='<p><img src="cid:logo@x"></p>', inline=[("logo@x", "image/png", png)],
        attachments=[("a.txt", "text/plain", b"x")]))
    inline = message.attachments.get(content_type="image/png")
    plain = message.attachments.get(content_type="text/plain")
    urls = [reverse("messages:list"), reverse("messages:detail", args=[message.pk]),
            reverse("messages:body", args=[message.pk]), reverse("messages:source", args=[message.pk]),
            reverse("messages:raw", args=[message.pk]), reverse("messages:attachment", args=[message.pk, plain.pk]),
            reverse("messages:inline", args=[message.pk, inline.pk]), reverse("messages:stylesheet"),
            reverse("messages:detail", args=[message.pk + 999])]
    anonymous = [reverse("messages:login")]
    client.force_login(tenants["alice"])
    checked = []
    for url in urls + ["LOGOUT"] + anonymous:
        if url == "LOGOUT":
            client.logout()
            continue
        response = client.get(url)
        assert response.status_code in (200, 404), url
        csp = response.get("Content-Security-Policy", "")
        assert "default-src 'none'" in csp and "frame-ancestors" in csp, (url, csp)
        assert "script-src" not in csp and "unsafe-eval" not in csp, (url, csp)
        checked.append(url)
    assert len(checked) == len(urls) + len(anonymous)
