"""Sanitised once at parse time, with a bounded cost: the stored form, its placeholder, and
the same result as sanitising at view time for every XSS payload."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from connections.models import StoredMessage
from connections.services.messages import safe_html
from connections.services.messages.sanitize import sanitize_html

from . import mailfactory
from .test_browser_xss import PAYLOADS, payload_mail


def nested(levels: int, tag: str = "div") -> str:
    return f"<p>before</p>{f'<{tag}>' * levels}deep text{f'</{tag}>' * levels}"


@pytest.mark.smoke
@pytest.mark.parametrize("levels", [safe_html.MAX_DEPTH + 1, 100_000, 1_000_000])
def test_too_deep_bodies_become_a_placeholder_with_a_note(levels):
    prepared = safe_html.prepare(nested(levels))
    assert f"nested more than {safe_html.MAX_DEPTH} levels deep" in prepared.note
    assert "raw message is kept unchanged" in prepared.html
    assert "<div" not in prepared.html and prepared.html.count("<") < 10


@pytest.mark.smoke
def test_a_body_at_the_depth_limit_is_sanitised():
    prepared = safe_html.prepare(nested(safe_html.MAX_DEPTH - 1))
    assert prepared.note == "" and prepared.html.count("<div>") == safe_html.MAX_DEPTH - 1


@pytest.mark.smoke
def test_too_large_bodies_become_a_placeholder():
    prepared = safe_html.prepare("<p>x</p>" * (safe_html.MAX_HTML_CHARS // 8 + 1))
    assert "characters long" in prepared.note and "<p>x</p>" not in prepared.html


@pytest.mark.smoke
def test_placeholder_keeps_the_text_escaped():
    prepared = safe_html.prepare("<div>" * 300 + "<b>Invoice</b> &lt;script&gt; <script>alert(1)</script>")
    assert "Invoice" in prepared.html and "<script>" not in prepared.html and "<b>" not in prepared.html


@pytest.mark.smoke
def test_optional_end_and_void_elements_do_not_count_as_nesting():
    assert safe_html.nesting_depth("<p>a" * 5000 + "<br><img src=x>" * 5000 + "<li>x" * 5000) == 0
    assert safe_html.nesting_depth("<table><tr><td><table><tr><td>x</td></tr></table></td></tr></table>") == 2


@pytest.mark.smoke
@pytest.mark.parametrize("name", sorted(PAYLOADS))
@pytest.mark.parametrize("load_remote", [False, True])
def test_stored_form_serves_what_sanitising_at_view_time_gave(name, load_remote):
    html = PAYLOADS[name] + '<img src="cid:Part1.X@host"><img src="cid:missing@host"><img src="//cdn.test/p.png">'
    inline = {"part1.x@host": "/messages/1/inline/2/?a=1&b=2"}
    expected = sanitize_html(html=html, inline_url=inline.get, load_remote=load_remote)
    got = safe_html.render(stored=safe_html.prepare(html).html, inline=inline, load_remote=load_remote)
    assert got.html == expected.html
    assert (got.blocked_remote, sorted(got.missing_inline)) == (expected.blocked_remote, sorted(expected.missing_inline))


@pytest.mark.smoke
def test_marker_text_in_the_body_stays_text():
    stored = safe_html.prepare('<p>x src="tm-remote:javascript:alert(1)" <img src="tm-remote:javascript:alert(2)"></p>').html
    served = safe_html.render(stored=stored, inline={}, load_remote=True).html
    assert "<img>" in served and "alert(2)" not in served  # an attacker's marker is dropped by the sanitiser
    assert "<p>x src=\"javascript:alert(1)\" <img></p>" == served  # text, never an attribute


def test_a_mail_stored_before_safe_html_is_prepared_once_on_first_view(tenants):
    message = mailfactory.store(connection=tenants["conn_a"], raw=payload_mail("old", nested(3000)))
    assert message.safe_html is None
    client = Client()
    client.force_login(tenants["alice"])
    response = client.get(reverse("messages:body", args=[message.pk]))
    assert response.status_code == 200 and b"nested more than" in response.content
    message.refresh_from_db()
    assert message.safe_html is not None and "nested more than" in message.safe_html
    assert any("nested more than" in p for p in message.parse_problems)
    page = client.get(reverse("messages:detail", args=[message.pk]))
    assert page.status_code == 200 and b"nested more than" in page.content
    # Served from the stored form from now on: the stored body is what the page shows.
    StoredMessage.objects.filter(pk=message.pk).update(safe_html="<p>stored form</p>")
    assert b"<p>stored form</p>" in client.get(reverse("messages:body", args=[message.pk])).content
