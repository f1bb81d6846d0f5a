"""The HTML sanitiser on its own (the browser tests prove the whole chain)."""
from __future__ import annotations

import re

import pytest

from connections.middleware import frame_policy
from connections.services.messages.files import content_disposition
from connections.services.messages.sanitize import normalise_content_id, sanitize_html
from connections.services.parsing.attachments import safe_filename

pytestmark = pytest.mark.smoke


def clean(html: str, *, remote: bool = False, inline: dict | None = None):
    inline = inline or {}
    return sanitize_html(html=html, inline_url=inline.get, load_remote=remote)


@pytest.mark.parametrize("dirty", [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<a href='javascript:alert(1)'>x</a>",
    "<a href='  JaVa&#x0A;Script:alert(1)'>x</a>",
    "<a href='vbscript:msgbox(1)'>x</a>",
    "<a href='data:text/html,<script>alert(1)</script>'>x</a>",
    "<svg onload=alert(1)></svg>",
    "<iframe src='https://evil.example/'></iframe>",
    "<form action='https://evil.example/'><input name=q></form>",
    "<meta http-equiv=refresh content='0;url=https://evil.example/'>",
    "<base href='https://evil.example/'>",
    "<link rel=stylesheet href='https://evil.example/x.css'>",
    "<style>@import url(https://evil.example/x.css)</style>",
    "<object data='x.swf'></object><embed src='x.swf'>",
    "<div style='width:expression(alert(1))'>x</div>",
    "<div style='background:url(https://evil.example/x.png)'>x</div>",
    "<div style='background:u\\72l(https://evil.example/x.png)'>x</div>",
    "<img src='https://evil.example/pixel.gif'>",
    "<img src='//evil.example/pixel.gif'>",
    "<img srcset='https://evil.example/a.png 1x'>",
    "<img src='data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+'>",
    "<table background='https://evil.example/bg.png'><tr><td>x</td></tr></table>",
])
def test_nothing_dangerous_survives(dirty):
    html = clean(dirty).html.lower()
    for needle in ("<script", "onerror", "onload", "javascript", "vbscript", "evil.example", "<iframe", "<form",
                   "<input", "<meta", "<base", "<link", "<style", "<object", "<embed", "expression", "<svg",
                   "data:text", "data:image/svg"):
        assert needle not in html, (dirty, html)


def test_formatting_links_and_raster_data_images_survive():
    html = clean("<h1>T</h1><p style='color: red; font-weight: bold'>Hi <a href='https://ok.example/x'>link</a> "
                 "<a href='mailto:a@b.example'>mail</a></p><table><tr><td bgcolor='#eee'>c</td></tr></table>"
                 "<img alt=dot src='data:image/png;base64,iVBORw0KGgo='>").html
    assert '<p style="color: red; font-weight: bold">' in html
    assert 'href="https://ok.example/x"' in html and 'rel="noopener noreferrer nofollow"' in html
    assert 'target="_blank"' in html and 'href="mailto:a@b.example"' in html
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in html and 'bgcolor="#eee"' in html


def test_remote_images_blocked_unless_switched_on():
    dirty = "<img src='https://img.example/a.png'><img src='http://img.example/b.png'>"
    blocked = clean(dirty)
    assert blocked.blocked_remote == 2 and "img.example" not in blocked.html
    shown = clean(dirty, remote=True)
    assert shown.blocked_remote == 0 and shown.html.count("img.example") == 2


def test_cid_references_use_stored_inline_attachments():
    result = clean("<img src='cid:Logo.1@Host'><img src='CID:%3Cpart2@host%3E'><img src='cid:gone@host'>",
                   inline={"logo.1@host": "/messages/1/inline/7/", "<part2@host>": "nope",
                           "part2@host": "/messages/1/inline/8/"})
    assert re.findall(r'src="([^"]+)"', result.html) == ["/messages/1/inline/7/", "/messages/1/inline/8/"]
    assert result.missing_inline == ["gone@host"]
    assert normalise_content_id("<Part1.ABC@Host>") == "part1.abc@host"


def test_frame_policy_never_allows_scripts_or_forms():
    for remote in (False, True):
        policy = frame_policy(load_remote=remote)
        assert "default-src 'none'" in policy and "script" not in policy
        assert "allow-scripts" not in policy and "allow-forms" not in policy
        assert ("https:" in policy) is remote


@pytest.mark.parametrize("name, expected", [
    ("report.pdf", 'attachment; filename="report.pdf"'),
    ("../../etc/passwd", 'attachment; filename="passwd"'),
    ("..\\..\\boot.ini", 'attachment; filename="boot.ini"'),
    ("Grüße.txt", "attachment; filename=\"Grue.txt\"; filename*=UTF-8''Gr%C3%BC%C3%9Fe.txt"),
    ("日本.pdf", "attachment; filename=\"attachment.pdf\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.pdf"),
    ('a"b\r\nSet-Cookie: x.txt', "attachment; filename=\"a_bSet-Cookie_ x.txt\"; "
                                 "filename*=UTF-8''a%22bSet-Cookie%3A%20x.txt"),
    ("", 'attachment; filename="attachment"'),
    ("...", 'attachment; filename="attachment"'),
])
def test_content_disposition_rfc6266(name, expected):
    assert content_disposition(filename=name) == expected
    assert "\r" not in expected and "\n" not in expected


def test_safe_filename_is_never_a_path():
    for name in ("../../x", "/abs/x", "C:\\dir\\x", "x\x00y"):
        assert "/" not in safe_filename(name) and "\\" not in safe_filename(name) and "\x00" not in safe_filename(name)
