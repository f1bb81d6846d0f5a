"""Make a mail's HTML body safe to show, with nh3 (ammonia).

The sanitised HTML is shown in a sandboxed iframe that has its own strict
Content-Security-Policy; this module is the first of those layers and must be safe
on its own:

- an allow-list of formatting tags and attributes; scripts, styles blocks, forms,
  frames, objects, SVG/MathML, <meta>/<link>/<base> are removed (the first group
  with their content);
- every event handler attribute goes (only allow-listed attributes survive);
- links may be http(s) or mailto only and open in a new tab with
  rel="noopener noreferrer nofollow";
- image sources: `cid:` references become URLs of the message's stored inline
  attachments; remote http(s) images are dropped unless the reader switched
  "load remote images" on; `data:` is kept only for raster images
  (png/gif/jpeg/webp) in <img src>: such images make no network request and cannot
  run script, and some mail programs embed pasted pictures that way. SVG data
  images and every other `data:` use (links, CSS) are removed;
- inline `style` attributes are reduced to an allow-list of properties, and any
  declaration that could fetch or execute something (url(), expression(), image-set,
  @import, behaviour bindings, CSS escapes) is dropped.
"""
from __future__ import annotations

import re
from urllib.parse import unquote
from dataclasses import dataclass, field
from typing import Callable

import nh3

_TAGS = {
    "a", "abbr", "acronym", "address", "b", "bdi", "bdo", "big", "blockquote", "br", "caption",
    "center", "cite", "code", "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em",
    "figcaption", "figure", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins",
    "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike", "strong",
    "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var",
    "wbr", "section", "article", "header", "footer", "main", "summary", "details",
}
# Removed together with everything inside them (their text is not mail content).
_DROP_WITH_CONTENT = {
    "script", "style", "title", "head", "noscript", "template", "svg", "math", "object",
    "embed", "iframe", "frame", "frameset", "applet", "textarea", "select", "option", "xml",
    "noembed", "noframes", "canvas", "audio", "video", "button",
}
_COMMON_ATTRS = {"style", "title", "align", "valign", "dir", "lang", "class", "id", "width", "height"}
_ATTRIBUTES = {
    "*": _COMMON_ATTRS,
    "a": {"href", "name"},
    "img": {"src", "alt", "border", "hspace", "vspace"},
    "font": {"color", "face", "size"},
    "table": {"border", "cellpadding", "cellspacing", "bgcolor", "summary"},
    "td": {"colspan", "rowspan", "bgcolor", "nowrap", "scope", "headers"},
    "th": {"colspan", "rowspan", "bgcolor", "nowrap", "scope", "headers"},
    "tr": {"bgcolor"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"value"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "del": {"cite", "datetime"},
    "ins": {"cite", "datetime"},
    "hr": {"size", "noshade"},
    "div": {"bgcolor"},
    "details": {"open"},
}
_STYLE_PROPERTIES = {
    "background-color", "border", "border-bottom", "border-bottom-color", "border-bottom-style",
    "border-bottom-width", "border-collapse", "border-color", "border-left", "border-left-color",
    "border-left-style", "border-left-width", "border-radius", "border-right", "border-right-color",
    "border-right-style", "border-right-width", "border-spacing", "border-style", "border-top",
    "border-top-color", "border-top-style", "border-top-width", "border-width", "clear", "color",
    "direction", "display", "float", "font", "font-family", "font-size", "font-style",
    "font-variant", "font-weight", "height", "letter-spacing", "line-height", "list-style-type",
    "margin", "margin-bottom", "margin-left", "margin-right", "margin-top", "max-height",
    "max-width", "min-height", "min-width", "padding", "padding-bottom", "padding-left",
    "padding-right", "padding-top", "table-layout", "text-align", "text-decoration",
    "text-indent", "text-transform", "vertical-align", "white-space", "width", "word-break",
    "word-spacing", "word-wrap", "overflow-wrap",
}
# Anything in a style value that can load a resource or run code, in any spelling.
_DANGEROUS_CSS = re.compile(
    r"url\s*\(|image-set|image\s*\(|expression|javascript|vbscript|@import|behavior|binding|"
    r"\\|/\*|<|&|element\s*\(",
    re.IGNORECASE,
)
_RASTER_DATA_URL = re.compile(r"^data:image/(png|gif|jpe?g|webp);base64,[a-z0-9+/=\s]+$", re.IGNORECASE)
# Control characters and whitespace browsers ignore inside a URL scheme ("java\tscript:").
_URL_NOISE = re.compile(r"[\x00-\x20\x7f]+")


def _normalise_url(value: str) -> str:
    return _URL_NOISE.sub("", value)


def normalise_content_id(value: str) -> str:
    """'<Part1.ABC@host>' and 'cid:part1.abc@host' both become 'part1.abc@host'."""
    value = unquote(value.strip())
    if value.lower().startswith("cid:"):
        value = value[4:]
    return value.strip().strip("<>").strip().lower()


@dataclass
class SanitizedHtml:
    html: str
    # Remote images removed because "load remote images" was off.
    blocked_remote: int = 0
    # cid: references with no stored inline attachment.
    missing_inline: list[str] = field(default_factory=list)


def _clean_style(value: str) -> str | None:
    kept = []
    for declaration in value.split(";"):
        if ":" not in declaration:
            continue
        name, _, val = declaration.partition(":")
        name = name.strip().lower()
        val = val.strip()
        if name not in _STYLE_PROPERTIES or not val or _DANGEROUS_CSS.search(val):
            continue
        kept.append(f"{name}: {val}")
    return "; ".join(kept) or None


def _clean_src(value: str, *, result: SanitizedHtml, inline_url: Callable[[str], str | None], load_remote: bool,
               mark_remote: str) -> str | None:
    """An image source: cid: to the stored inline attachment, remote ones blocked (counted),
    loaded or marked, raster data: URLs kept, anything else dropped."""
    url = _normalise_url(value)
    lowered = url.lower()
    if lowered.startswith("cid:"):
        cid = normalise_content_id(url)
        target = inline_url(cid)
        if target is None:
            result.missing_inline.append(cid)
        return target
    if lowered.startswith(("http:", "https:")):
        if mark_remote:
            return mark_remote + value
        if load_remote:
            return value
        result.blocked_remote += 1
        return None
    if lowered.startswith("data:") and _RASTER_DATA_URL.match(url):
        return url
    # Relative, protocol-relative, data: of other kinds, javascript: …
    if lowered.startswith("//"):
        result.blocked_remote += 1
        if mark_remote:
            return mark_remote  # no URL: always blocked, counted when served
    return None


def sanitize_html(
    *,
    html: str,
    inline_url: Callable[[str], str | None],
    load_remote: bool = False,
    mark_remote: str = "",
) -> SanitizedHtml:
    """Return the mail's HTML made safe for the sandboxed frame.

    `inline_url(content_id)` returns the URL serving the stored inline attachment with
    that (normalised) Content-ID, or None when the message has none. With `mark_remote`
    (the stored form, see services.messages.safe_html), a remote image source is kept behind that
    prefix, for the page to unmark or drop when it serves the body.
    """
    result = SanitizedHtml(html="")

    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        if attr == "style":
            return _clean_style(value)
        if attr == "href":
            url = _normalise_url(value)
            scheme = url.split(":", 1)[0].lower() if ":" in url else ""
            return value if scheme in {"http", "https", "mailto"} else None
        if attr == "src":
            return _clean_src(value, result=result, inline_url=inline_url, load_remote=load_remote,
                              mark_remote=mark_remote)
        if attr in {"cite"}:
            return None  # never needed for reading; avoids odd URLs
        return value

    result.html = nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags=_DROP_WITH_CONTENT,
        attributes=_ATTRIBUTES,
        attribute_filter=attribute_filter,
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        url_schemes={"http", "https", "mailto", "cid", "data"} | ({mark_remote.rstrip(":")} if mark_remote else set()),
    )
    return result
