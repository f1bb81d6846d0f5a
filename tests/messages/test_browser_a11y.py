"""The pages as a keyboard, screen-reader and phone user meets them, in real Chromium:
lang, one h1, labelled fields, a working skip link, a visible focus ring, text contrast
(WCAG AA) in light and dark mode, and no sideways scrolling at phone width."""
from __future__ import annotations

import re

import pytest
from django.urls import reverse

from . import mailfactory
from .browser import chromium, open_context, screenshot  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _rgb(value: str) -> tuple[float, float, float, float]:
    parts = [float(x) for x in re.findall(r"[\d.]+", value)]
    return (*parts[:3], parts[3] if len(parts) > 3 else 1.0)


def _luminance(rgb) -> float:
    def channel(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


# The colour of an element's text and the first opaque background behind it.
COLOURS = """el => {
  let bg = null, node = el;
  while (node && node.nodeType === 1) {
    const c = getComputedStyle(node).backgroundColor;
    if (c && c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') { bg = c; break; }
    node = node.parentElement;
  }
  return [getComputedStyle(el).color, bg || 'rgb(255, 255, 255)'];
}"""

TEXT_SELECTORS = ["h1", "main p", ".messages th", ".messages td.from", ".messages td.subject a",
                  ".messages td.conn", ".messages td.date", ".badge", ".topbar .brand", ".topbar .linkish",
                  ".field label", "input", "select", "button.primary", ".headers dt", ".headers dd",
                  ".toolbar a", ".notice", ".problems li", ".attachments .meta", ".attachments a", "summary",
                  ".pager a", ".alert"]


@pytest.fixture
def pages(tenants):
    for i in range(60):  # more than a page, so the pager shows
        mailfactory.store(connection=tenants["conn_a"], raw=mailfactory.build(
            subject=f"Quarterly numbers {i}", sender="Jörg Müller <jorg@example.com>", text="Hello",
            attachments=[("numbers.csv", "text/csv", b"a,b\n")] if i % 4 == 0 else []))
    long_word = "Supercalifragilisticexpialidocious" * 4
    message = mailfactory.store(
        connection=tenants["conn_a"],
        raw=mailfactory.build(subject=f"A very long subject {long_word}", sender=f"{long_word} <{long_word}@example.com>",
                              html='<p>Hi <img src="https://cdn.example/x.png"></p>', text="plain " + long_word,
                              attachments=[(f"{long_word}.pdf", "application/pdf", b"%PDF")]),
        parse_problems=["part 1.2: unknown charset 'x-foo'"])
    return {
        "list": reverse("messages:list"),
        "list with error": reverse("messages:list") + "?from=nope",
        "detail": reverse("messages:detail", args=[message.pk]),
        "not found": reverse("messages:detail", args=[message.pk + 10_000]),
    }


def check_page(page, label: str) -> list[str]:
    problems = []
    if page.evaluate("() => document.documentElement.lang") != "en":
        problems.append(f"{label}: <html lang> is not 'en'")
    if page.locator("h1").count() != 1:
        problems.append(f"{label}: {page.locator('h1').count()} h1 elements")
    if not page.title().strip():
        problems.append(f"{label}: empty <title>")
    for field in page.locator("input:not([type=hidden]), select, textarea").all():
        fid = field.get_attribute("id")
        if not (field.get_attribute("aria-label") or (fid and page.locator(f"label[for='{fid}']").count())):
            problems.append(f"{label}: field {field.evaluate('e => e.outerHTML')[:80]} has no label")
    for frame in page.locator("iframe").all():
        if not frame.get_attribute("title"):
            problems.append(f"{label}: iframe without title")
    for selector in TEXT_SELECTORS:
        for element in page.locator(selector).all()[:3]:
            if not element.is_visible():
                continue
            fg, bg = (_rgb(c) for c in element.evaluate(COLOURS))
            ratio = contrast(fg, bg)
            if ratio < 4.5:
                problems.append(f"{label}: {selector} contrast {ratio:.2f} ({fg} on {bg})")
    return problems


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_landmarks_labels_and_contrast(chromium, live_server, tenants, pages, scheme):
    context, watch = open_context(chromium, live_server, tenants["alice"], color_scheme=scheme)
    page = context.new_page()
    problems = []
    for label, url in pages.items():
        page.goto(live_server.url + url, wait_until="load")
        problems += check_page(page, f"{label} ({scheme})")
        screenshot(page, f"a11y-{label.replace(' ', '-')}-{scheme}")
    context.close()
    anonymous, _ = open_context(chromium, live_server, None, color_scheme=scheme)
    page = anonymous.new_page()
    page.goto(live_server.url + reverse("messages:login"), wait_until="load")
    problems += check_page(page, f"sign in ({scheme})")
    screenshot(page, f"a11y-sign-in-{scheme}")
    anonymous.close()
    assert not problems, "\n".join(problems)


def test_skip_link_and_focus_ring(chromium, live_server, tenants, pages):
    context, _ = open_context(chromium, live_server, tenants["alice"])
    page = context.new_page()
    page.goto(live_server.url + pages["list"], wait_until="load")
    page.keyboard.press("Tab")
    skip = page.locator("a.skip")
    assert page.evaluate("() => document.activeElement.className") == "skip"
    box = skip.bounding_box()
    assert box and box["x"] >= 0 and box["y"] >= 0, "the skip link shows when focused"
    style = skip.evaluate("e => { const s = getComputedStyle(e); return [s.outlineStyle, s.outlineWidth, s.outlineColor]; }")
    assert style[0] == "solid" and float(style[1].rstrip("px")) >= 2, style
    screenshot(page, "a11y-skip-link-focused")
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    # The next Tab lands inside the content (the search box), not back in the top bar.
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "q"
    # Every focusable control shows a ring with at least 3:1 against the page.
    page_bg = _rgb(page.evaluate("() => getComputedStyle(document.body).backgroundColor"))
    if page_bg[3] == 0:
        page_bg = _rgb(page.evaluate("() => getComputedStyle(document.documentElement).backgroundColor"))
    for selector in ("#q", "#connection", "button.primary", ".messages td.subject a", ".pager a"):
        page.locator(selector).first.focus()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")  # keyboard focus, so :focus-visible applies
        outline = page.locator(selector).first.evaluate(
            "e => { const s = getComputedStyle(e); return [s.outlineStyle, s.outlineColor]; }")
        assert outline[0] == "solid", (selector, outline)
        assert contrast(_rgb(outline[1]), page_bg) >= 3, (selector, outline, page_bg)
    context.close()


def test_phone_width_has_no_sideways_scrolling(chromium, live_server, tenants, pages):
    context, _ = open_context(chromium, live_server, tenants["alice"], width=360)
    page = context.new_page()
    for label, url in pages.items():
        page.goto(live_server.url + url, wait_until="load")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 360, f"{label}: page is {width}px wide at 360px"
        # Form fields use the full width rather than odd, ragged sizes.
        for field in page.locator(".filters input, .filters select").all():
            assert field.bounding_box()["width"] >= 250, label
        screenshot(page, f"a11y-phone-{label.replace(' ', '-')}")
    context.close()
