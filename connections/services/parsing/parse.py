"""Parse a raw mail into headers, bodies and attachments — without ever losing it.

    parse_bytes(raw)          a mail held in memory (bytes or a memoryview)
    parse_file(path, tmpdir)  a mail in a file, with bounded memory (big attachments are
                              decoded into temporary files under tmpdir)
    parse_headers_only(raw)   the header section of a mail too large to download

Both parses give the email package's result (policy compat32 for the structure): a small mail
is parsed by the email package whole; a bigger one is cut into its leaf parts by the one MIME
splitter (splitter.py), over the buffer or the file, and each leaf is read as the email package
reads it. A mail the splitter does not reproduce goes to the email package whole (a file when it
is at most leaves.STREAM_FALLBACK_MAX, else it is split best effort). A part that cannot be
decoded is kept raw as an attachment, and the message carries a list of parse problems; NUL
bytes are removed from text (PostgreSQL cannot store them). Never raises.
"""
from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from typing import BinaryIO

from . import leaves
from .big_leaves import big_leaf
from .charsets import decode_bytes
from .header_block import find_header_end, parse_header_section
from .headers import headers_into
from .leaves import LeafContext, in_memory, leaf_parts, memory_leaf
from .lines import FileSource, LineReader, MemorySource, Source
from .results import ParsedMessage
from .splitter import Fallback, Leaf, Splitter
from .walk import Bodies, declared_charset, defect_problem, defects, iter_parts, set_linesep, walk

SPLIT_MIN = 16 * 1024  # mails smaller than this are parsed by the email package whole
_NUL = re.compile(rb"\x00")


def parse_bytes(raw: bytes | memoryview) -> ParsedMessage:
    """Parse a whole mail held in memory. Never raises."""
    if len(raw) >= SPLIT_MIN and not _has_nul(raw):
        result = ParsedMessage()
        try:
            split(raw, result, None, strict=True)
            return result
        except Exception:  # Fallback, RecursionError, a bug: the email package decides
            pass
    return parse_with_email_package(raw if isinstance(raw, bytes) else bytes(raw))


def _has_nul(raw: bytes | memoryview) -> bool:
    return b"\x00" in raw if isinstance(raw, bytes) else _NUL.search(raw) is not None


def parse_file(path: str, *, tmpdir: str | None = None) -> ParsedMessage:
    """Parse a mail from a file with bounded memory; the same result as parse_bytes.

    Small leaf parts are read into memory, large ones are transfer-decoded from the file in
    chunks into temporary files under `tmpdir` (removed by ParsedMessage.cleanup). Never raises.
    """
    result = ParsedMessage()
    try:
        with open(path, "rb") as fh:
            try:
                split(fh, result, tmpdir, strict=True)
                return result
            except Fallback as exc:
                result.cleanup()
                source = FileSource(fh)
                if source.size <= leaves.STREAM_FALLBACK_MAX:
                    return parse_bytes(source.read(0, source.size))
                result = ParsedMessage()
                result.problem(f"MIME structure unusual ({exc}); split best effort")
                split(fh, result, tmpdir, strict=False)
    except Exception as exc:
        result.problem(f"the mail could not be fully parsed ({type(exc).__name__}); raw kept")
    return result


def split(mail: BinaryIO | bytes | memoryview, result: ParsedMessage, tmpdir: str | None, *, strict: bool) -> None:
    """Parse `mail` (an open file, or the mail in memory) into `result` through the splitter.

    strict: raise Fallback where the result would differ from the email package's; else
    note it as a problem and go on (best effort). Reading a file, big leaves and attachments
    go to temporary files under `tmpdir`.
    """
    in_file = not isinstance(mail, (bytes, memoryview))
    source: Source = FileSource(mail) if in_file else MemorySource(mail)  # type: ignore[arg-type]
    reader = LineReader(source)
    splitter = Splitter(reader, strict, result)
    top = splitter.part([], "", False, 0)
    if reader.long_line:
        splitter.anomaly("a line of more than 8 MB")
    linesep = "\r\n" if b"\r\n" in source.read(0, 4096) else "\n"
    if reader.nul:
        result.problem("the mail contains NUL bytes (removed from the decoded text)")
    ctx = LeafContext(source, result, {"text": [], "html": []}, linesep, tmpdir, strict, to_files=in_file)
    headers_into(top, result, charset=declared_charset(leaf_parts(ctx, splitter.leaves)))
    for leaf in splitter.leaves:
        if in_memory(leaf, ctx):
            memory_leaf(leaf, ctx)
        else:
            big_leaf(leaf, ctx)
    # The defects last and in the tree's order, as the email package reports them.
    for entry in splitter.order:
        for name in (entry.defects if isinstance(entry, Leaf) else entry):
            defect_problem(name, result)
    _bodies_into(ctx.bodies, result)


def parse_with_email_package(raw: bytes) -> ParsedMessage:
    """The email package parses the whole mail (the reference the splitter reproduces)."""
    result = ParsedMessage()
    if b"\x00" in raw:
        result.problem("the mail contains NUL bytes (removed from the decoded text)")
    try:
        msg = BytesParser(policy=policy.compat32).parsebytes(raw)
    except Exception as exc:  # a MIME tree too deep for the email package (RecursionError), a parser bug
        what = "its MIME structure is nested too deeply" if isinstance(exc, RecursionError) else type(exc).__name__
        result.problem(f"the mail's body could not be parsed ({what}); the headers were read, the body is kept raw only")
        _header_section_into(raw, result)
        result.text_body = decode_bytes(raw[:1_000_000], None)
        return result
    set_linesep(msg, "\r\n" if b"\r\n" in raw[:4096] else "\n")
    headers_into(msg, result, charset=declared_charset(iter_parts(msg)))
    bodies: Bodies = {"text": [], "html": []}
    try:
        walk(msg, result, "", in_alternative=False, bodies=bodies)
    except RecursionError:
        result.problem("MIME structure nested too deeply; kept raw")
    except Exception as exc:
        result.problem(f"MIME structure unreadable ({type(exc).__name__}); kept raw")
    defects(msg, result)
    _bodies_into(bodies, result)
    return result


def parse_headers_only(raw_header: bytes) -> ParsedMessage:
    """Headers of a mail too large to download (oversized)."""
    result = ParsedMessage()
    try:
        msg = parse_header_section(raw_header)
        headers_into(msg, result, charset=declared_charset(iter_parts(msg)))
    except Exception as exc:
        result.problem(f"headers unreadable ({type(exc).__name__})")
    return result


def _header_section_into(raw: bytes, result: ParsedMessage) -> None:
    """Subject, sender, date … from the header section alone, whatever the body is."""
    try:
        bounds = find_header_end(raw, 0, len(raw))
        msg = parse_header_section(raw, 0, bounds[0] if bounds else len(raw))
        headers_into(msg, result, charset=declared_charset(iter_parts(msg)))
    except Exception as exc:
        result.problem(f"headers unreadable ({type(exc).__name__})")


def _bodies_into(bodies: Bodies, result: ParsedMessage) -> None:
    result.text_body = "\n".join(t for t in bodies["text"] if t)
    result.html_body = "\n".join(t for t in bodies["html"] if t)
