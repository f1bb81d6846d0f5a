"""A leaf part held in memory, read into bodies and attachments as the email package reads it.

Two shortcuts skip the email package's line-by-line parse where its result is known: a clean
base64 attachment is decoded in one call, and a leaf whose header section was read plainly
gets its body as its payload. Everything else is parsed by the email package.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesParser
from typing import Iterator

from .attachments import attachment, part_content_type, spill
from .lines import Source
from .results import ParsedMessage
from .splitter import Leaf
from .transfer import b64_clean
from .walk import Bodies, iter_parts, set_linesep, walk

# Reading a file (parse_file): a leaf part (headers + body) up to this size is read and parsed
# in memory; larger leaves are transfer-decoded from the file in chunks (big_leaves).
STREAM_LEAF_IN_MEMORY_MAX = 2 * 1024 * 1024
# A mail whose MIME structure is malformed in a way the splitter does not reproduce (missing
# boundaries, header defects of a multipart, multipart/digest, ...) is parsed by parse_bytes
# when it is at most this large (the same result); a larger one is split best effort.
STREAM_FALLBACK_MAX = 16 * 1024 * 1024
_SPILL_MIN = 64 * 1024  # reading a file: attachments of in-memory leaves this large go to temp files
_B64_SHORTCUT_MIN = 8 * 1024  # base64 leaves at least this large are decoded without the email package
_EOL_END = re.compile(r"(\r\n|\r|\n)\Z")


@dataclass
class LeafContext:
    """One split mail's leaves being read: where from, into what."""
    source: Source
    result: ParsedMessage
    bodies: Bodies
    linesep: str
    tmpdir: str | None
    strict: bool
    to_files: bool  # reading a file: big leaves and big attachments go to temporary files


def in_memory(leaf: Leaf, ctx: LeafContext) -> bool:
    if not ctx.to_files:
        return True
    size = leaf.end - leaf.start
    # A nested mail is re-serialised and a multipart without boundary keeps its text
    # readable, both from the email package's tree: in memory up to the fallback size.
    return size <= STREAM_LEAF_IN_MEMORY_MAX or (
        leaf.headers.get_content_maintype() in ("message", "multipart") and size <= STREAM_FALLBACK_MAX)


def leaf_parts(ctx: LeafContext, leaves: list[Leaf]) -> Iterator[Message]:
    """The parts of the whole mail whose charset walk.declared_charset looks at, in its order,
    from the leaves (a nested mail's parts only when it is read in memory)."""
    for leaf in leaves:
        if leaf.headers.get_content_maintype() != "message":
            yield leaf.headers
        elif in_memory(leaf, ctx):
            yield from iter_parts(parse_leaf(ctx.source, leaf))


def parse_leaf(source: Source, leaf: Leaf) -> Message:
    """The email package's tree of a leaf (parsed once, then kept on the leaf)."""
    if leaf.parsed is not None:
        return leaf.parsed
    raw = source.read(leaf.start, leaf.full_end if leaf.full_end >= 0 else leaf.end)
    msg = BytesParser(policy=policy.compat32).parsebytes(raw)
    if leaf.in_digest and msg.get("content-type") is None:
        # In a multipart/digest a part without Content-Type is a message/rfc822.
        msg.set_default_type("message/rfc822")
        body = raw[leaf.body_start - leaf.start:]
        msg.set_payload([BytesParser(policy=policy.compat32).parsebytes(body)])
    if leaf.before_boundary:
        _after_subpart(msg)
    leaf.parsed = msg
    return msg


def _after_subpart(msg: Message) -> None:
    """What the feedparser does to a part of a multipart once the part is parsed: the line
    break before the next boundary is taken from the message it created last (its
    epilogue if that is a multipart, else its payload)."""
    last = msg
    while last.get_content_maintype() == "message" and isinstance(last.get_payload(), list) and last.get_payload():
        payload = last.get_payload()
        last = payload[-1] if last.get_content_type() == "message/delivery-status" else payload[0]
    if last.get_content_maintype() == "multipart":
        if last.epilogue == "":
            last.epilogue = None
        elif last.epilogue is not None:
            last.epilogue = _EOL_END.sub("", last.epilogue)
    else:
        # The payload as stored: get_payload() would decode 8-bit text for display.
        payload = last._payload  # noqa: SLF001 (read only; written back through set_payload)
        if isinstance(payload, str):
            last.set_payload(_EOL_END.sub("", payload))


def memory_leaf(leaf: Leaf, ctx: LeafContext) -> None:
    """The leaf's bodies and attachments into ctx (attachments spilled to files when reading one)."""
    before = len(ctx.result.attachments)
    if not _clean_base64_leaf(leaf, ctx):
        if _plain_leaf(leaf):
            msg = leaf.headers
            msg.set_payload(ctx.source.read(leaf.body_start, leaf.end).decode("ascii", "surrogateescape"))
        else:
            msg = parse_leaf(ctx.source, leaf)
        _walk_leaf(msg, leaf, ctx)
    if ctx.to_files:
        for att in ctx.result.attachments[before:]:
            if att.payload is not None and len(att.payload) >= _SPILL_MIN:
                spill(att, ctx.tmpdir)


def _walk_leaf(msg: Message, leaf: Leaf, ctx: LeafContext) -> None:
    set_linesep(msg, ctx.linesep)
    try:
        walk(msg, ctx.result, leaf.index, in_alternative=leaf.in_alternative, bodies=ctx.bodies)
    except RecursionError:
        ctx.result.problem("MIME structure nested too deeply; kept raw")
    except Exception as exc:
        ctx.result.problem(f"MIME structure unreadable ({type(exc).__name__}); kept raw")
    leaf.defects = [type(d).__name__ for part in iter_parts(msg) for d in (getattr(part, "defects", None) or [])
                    # the feedparser adds this one to the root of a parse only (the leaf, or a
                    # digest part's message here), never to a part of a whole mail
                    if not (leaf.index and type(d).__name__ == "MultipartInvariantViolationDefect")]


def _plain_leaf(leaf: Leaf) -> bool:
    """A leaf the email package would parse into its headers and its body as the payload,
    nothing else: header section read plainly, complete, and not a multipart or message."""
    return (leaf.plain_headers and not leaf.missing_separator and not leaf.in_digest
            and leaf.headers.get_content_maintype() not in ("multipart", "message"))


def _clean_base64_leaf(leaf: Leaf, ctx: LeafContext) -> bool:
    """A big attachment in clean base64 (no stray characters, padding only at the end)
    decoded in one call, as the email package would decode it; False: not such a leaf."""
    headers = leaf.headers
    if (leaf.end - leaf.body_start < _B64_SHORTCUT_MIN or leaf.missing_separator or leaf.in_digest
            or headers.defects or str(headers.get("content-transfer-encoding", "")).lower() != "base64"):
        return False
    ctype = part_content_type(headers)
    if ctype.split("/", 1)[0] in ("text", "message", "multipart"):
        return False
    buffer = ctx.source.buffer()
    if buffer is not None:
        data = b64_clean(buffer, leaf.body_start, leaf.end)
    else:
        data = b64_clean(ctx.source.read(leaf.body_start, leaf.end))
    if data is None:
        return False  # the email package's lenient rules decode it and report what is wrong
    ctx.result.attachments.append(attachment(headers, data, ctx.result, leaf.index or "1", content_type=ctype))
    return True
