"""Hostile mails through a real poll of the real Dovecot, then every page in real Chromium.

Nested-HTML bodies (100,000 and 1,000,000 levels, and 10 MB of them; the bodies above
4 MB are kept as attachments by the parser) cost about depth² to
sanitise; a 2,000-level multipart is too deep for the email package. Each must be stored
with its subject, sender and date, and every page of it (list, detail, body frame, source)
must answer within the browser's navigation limit (generous here: the < 1 s goal is
measured by bench/bench_hostile_pages.py, not asserted in a test).
"""
from __future__ import annotations

import uuid
from email.message import EmailMessage

import pytest
from django.urls import reverse

from connections.models import Membership, PollOutcome, Role, StoredMessage
from connections.services.inbound.poll import poll

from ..inbound.conftest import make_credential, make_inbound, tenant  # noqa: F401  (fixtures)
from .browser import chromium, open_context  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.mailservers, pytest.mark.django_db(transaction=True)]

PAGE_LIMIT_MS = 20_000


def html_mail(subject: str, html: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Mallory <mallory@attacker.test>"
    msg["To"] = "victim@example.test"
    msg["Subject"] = subject
    msg["Date"] = "Sat, 21 Nov 2026 08:00:00 +0000"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@attacker.test>"
    msg.set_content("plain text part")
    msg.add_alternative(html, subtype="html", cte="base64")
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def deep_multipart(subject: str, levels: int) -> bytes:
    parts = [(f"From: Mallory <mallory@attacker.test>\r\nTo: victim@example.test\r\nSubject: {subject}\r\n"
              f"Date: Sat, 21 Nov 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\n").encode()]
    for i in range(levels):
        parts.append(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode())
    parts.append(b"Content-Type: text/html\r\n\r\n<p>bottom</p>\r\n")
    parts.extend(f"--b{i}--\r\n".encode() for i in reversed(range(levels)))
    return b"".join(parts)


HOSTILE = {
    "nested 100k": lambda s: html_mail(s, "<div>" * 100_000 + "deep"),
    "nested 1M": lambda s: html_mail(s, "<div>" * 1_000_000 + "deep"),
    "nested 1M of b": lambda s: html_mail(s, "<b>" * 1_000_000 + "deep"),
    "nested 10MB": lambda s: html_mail(s, "<div>" * 2_000_000 + "deep"),
    "multipart 2000": lambda s: deep_multipart(s, 2000),
}


def test_hostile_mails_poll_and_every_page_answers(mail_servers, mailbox, make_inbound, tenant,
                                                    chromium, live_server, django_user_model):
    address, password = mailbox
    mail_servers.append(address, [make(name) for name, make in HOSTILE.items()])
    conn = make_inbound(address, password, post_processing="keep", selection="all")
    result = poll(connection_id=conn.pk, trigger="test")
    assert result.outcome == PollOutcome.SUCCESS, result.error
    assert result.stored == len(HOSTILE)
    reader = django_user_model.objects.create_user(f"reader-{uuid.uuid4().hex[:6]}", password="pw-reader-123")
    Membership.objects.create(user=reader, tenant=tenant, role=Role.VIEWER)

    messages = {m.subject: m for m in StoredMessage.objects.filter(connection=conn)}
    assert set(messages) == set(HOSTILE)  # headers survive every body
    for message in messages.values():
        assert message.from_header == "Mallory <mallory@attacker.test>" and message.date is not None
        assert message.safe_html is not None  # sanitised (or withheld) by the poll, not by a page
    deep = messages["multipart 2000"]
    assert any("nested too deeply" in p for p in deep.parse_problems)
    # Bodies above the parser's 4 MB text limit are kept as attachments; these two stay bodies.
    assert messages["nested 100k"].html_body and messages["nested 1M of b"].html_body
    for name in ("nested 100k", "nested 1M", "nested 1M of b", "nested 10MB"):
        message = messages[name]
        if message.html_body:  # kept as the HTML body: withheld with a note
            assert "nested more than" in message.safe_html and "<div" not in message.safe_html

    context, watch = open_context(chromium, live_server, reader)
    page = context.new_page()
    try:
        page.goto(live_server.url + reverse("messages:list"), timeout=PAGE_LIMIT_MS)
        listed = page.inner_text("main")
        for name in HOSTILE:
            assert name in listed
        assert "Mallory" in listed
        for name, message in messages.items():
            for url in (reverse("messages:detail", args=[message.pk]), reverse("messages:body", args=[message.pk]),
                        reverse("messages:detail", args=[message.pk]) + "?remote=1"):
                response = page.goto(live_server.url + url, timeout=PAGE_LIMIT_MS)
                assert response.status == 200, (name, url)
            page.goto(live_server.url + reverse("messages:detail", args=[message.pk]), timeout=PAGE_LIMIT_MS)
            assert name in page.inner_text("h1")
            if message.html_body and "nested more than" in message.safe_html:
                frame = page.frame_locator("iframe.body-frame")
                assert "nested more than" in frame.locator("body").inner_text(timeout=PAGE_LIMIT_MS)
                assert frame.locator("div").count() == 0
        assert watch.dialogs == [] and watch.outside == []
    finally:
        context.close()
