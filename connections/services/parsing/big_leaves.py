"""A leaf part too big to hold in memory (reading a file): transfer-decoded from the file in
chunks into a temporary file — the same bodies, attachments and problems as the email
package gives, or Fallback (strict) where it would decode differently."""
from __future__ import annotations

from email.message import Message
from typing import Iterator

from .attachments import attachment, file_attachment, part_content_type
from .charsets import decode_bytes
from .leaves import LeafContext
from .results import ParsedAttachment, ParsedMessage
from .splitter import Fallback, Leaf
from .transfer import Base64Sink, lenient_b64, quoted_printable
from .walk import body_kind

STREAM_TEXT_MAX = 4 * 1024 * 1024  # decoded text bodies larger than this are kept as attachments


def big_leaf(leaf: Leaf, ctx: LeafContext) -> None:
    headers, index = leaf.headers, leaf.index or "1"
    ctype = part_content_type(headers)
    if leaf.missing_separator:
        leaf.defects.append("MissingHeaderBodySeparatorDefect")
    if ctype.split("/", 1)[0] in ("multipart", "message"):
        _kept_whole(leaf, ctx, ctype)
        return
    kind = body_kind(headers, ctype)
    if kind is not None and leaf.in_alternative and ctx.bodies[kind]:
        return  # a second alternative of the same type: the first one is the body
    att = _decoded_to_file(leaf, ctx)
    if kind is not None and att.size <= STREAM_TEXT_MAX:
        with att.open() as part_fh:
            data = part_fh.read()
        att.cleanup()
        try:
            charset = headers.get_content_charset()
        except Exception:
            charset = None
        ctx.bodies[kind].append(decode_bytes(data, charset, ctx.result, where=f"part {index}: "))
        return
    if kind is not None:
        ctx.result.problem(f"part {index}: text body of {att.size} bytes kept as an attachment")
    # The file name and its problems, in the order parse_bytes reports them.
    named = attachment(headers, b"", ctx.result, index, content_type=ctype)
    att.filename, att.inline, att.content_id = named.filename, named.inline, named.content_id
    ctx.result.attachments.append(att)


def _kept_whole(leaf: Leaf, ctx: LeafContext, ctype: str) -> None:
    """A multipart without a boundary (kept raw, as parse_bytes does) or a large nested mail
    (kept as its raw body instead of re-serialised)."""
    headers, index = leaf.headers, leaf.index or "1"
    multipart = ctype.startswith("multipart/")
    if multipart:
        ctx.result.problem(f"part {index}: {ctype} without usable boundary; kept raw")
        leaf.defects.append("StartBoundaryNotFoundDefect" if _has_boundary(headers) else "NoBoundaryInMultipartDefect")
    att = file_attachment(headers, ctx.result, index, ctx.source.chunks(leaf.body_start, leaf.end), ctx.tmpdir,
                          raw_kept=multipart, content_type="application/octet-stream" if multipart else ctype)
    ctx.result.attachments.append(att)


def _has_boundary(headers: Message) -> bool:
    try:
        return headers.get_boundary() is not None
    except Exception:
        return False


def _decoded_to_file(leaf: Leaf, ctx: LeafContext) -> ParsedAttachment:
    """The leaf's body transfer-decoded into a temporary file (name not yet looked at)."""
    headers, index = leaf.headers, leaf.index or "1"
    cte = str(headers.get("content-transfer-encoding", "")).lower()
    chunks = ctx.source.chunks(leaf.body_start, leaf.end)
    if cte == "base64":
        return _base64_to_file(leaf, ctx, chunks)
    if cte == "quoted-printable":
        data: Iterator[bytes] = quoted_printable(chunks)
    elif cte in ("x-uuencode", "uuencode", "uue", "x-uue"):
        if ctx.strict:
            raise Fallback("large uuencoded part")
        ctx.result.problem(f"part {index}: large uuencoded part kept encoded")
        data = chunks
    else:
        data = chunks
    return file_attachment(headers, ParsedMessage(), index, data, ctx.tmpdir)


def _base64_to_file(leaf: Leaf, ctx: LeafContext, chunks: Iterator[bytes]) -> ParsedAttachment:
    headers, index = leaf.headers, leaf.index or "1"
    sink = Base64Sink()
    padding = False

    def decoded() -> Iterator[bytes]:
        nonlocal padding
        for chunk in chunks:
            yield sink.feed(chunk)
        last, padding = sink.close()
        yield last

    att = file_attachment(headers, ParsedMessage(), index, decoded(), ctx.tmpdir)
    if sink.invalid:
        att.cleanup()
        if ctx.strict:
            raise Fallback("invalid base64 in a large part")
        # Best effort: decode what is decodable and say so.
        ctx.result.problem(f"part {index}: invalid base64; decoded what could be")
        att = file_attachment(headers, ParsedMessage(), index,
                              lenient_b64(ctx.source.chunks(leaf.body_start, leaf.end)), ctx.tmpdir)
    if padding:
        ctx.result.problem(f"part {index}: InvalidBase64PaddingDefect")
    return att
