"""An email.message tree walked into text and HTML bodies and attachments.

Python's email package gives the tree (the fast compat32 policy); everything it can trip on
is caught per part. Known traps, handled here:

- a multipart part without a boundary parses as a non-multipart whose get_content() raises
  KeyError (we never call get_content(); the part is kept raw as an attachment);
- get_body() may return a multipart/related container and iter_attachments() yields
  containers (we walk the tree ourselves);
- a part that cannot be decoded is kept raw as an attachment, with a recorded problem.
"""
from __future__ import annotations

import io
from email import policy
from email.generator import BytesGenerator
from email.message import Message
from typing import Iterable, Iterator

from .attachments import attachment, part_content_type, part_disposition
from .charsets import codec_for, decode_bytes
from .results import ParsedMessage

Bodies = dict[str, list[str]]  # "text" and "html": the body candidates found, in order


def raw_body(part: Message) -> bytes:
    """The part's body as it was sent (no transfer decoding)."""
    payload = part.get_payload()
    if isinstance(payload, str):
        # 8-bit bytes come back from their surrogates; any real non-ASCII text as UTF-8.
        return payload.encode("utf-8", "surrogateescape")
    if isinstance(payload, bytes):
        return payload
    return _serialize(part, result_linesep(part))


def set_linesep(msg: Message, linesep: str) -> None:
    """The line break the mail uses, for re-serialising its nested messages as they came."""
    for part in iter_parts(msg):
        part._tenantmail_linesep = linesep  # type: ignore[attr-defined]


def result_linesep(part: Message) -> str:
    return getattr(part, "_tenantmail_linesep", "\n")


def _serialize(msg: Message, linesep: str = "\n") -> bytes:
    buf = io.BytesIO()
    pol = policy.compat32.clone(linesep=linesep)
    BytesGenerator(buf, mangle_from_=False, maxheaderlen=0, policy=pol).flatten(msg)
    return buf.getvalue()


def decoded_payload(part: Message, result: ParsedMessage, index: str) -> tuple[bytes, bool]:
    """Transfer-decoded bytes, or the raw body when decoding fails (flag True)."""
    try:
        payload = part.get_payload(decode=True)
    except Exception as exc:
        result.problem(f"part {index}: cannot decode ({type(exc).__name__}); kept raw")
        return raw_body(part), True
    if payload is None:
        return raw_body(part), True
    for defect in getattr(part, "defects", []) or []:
        name = type(defect).__name__
        if "Base64" in name or "Padding" in name or "InvalidBase64" in name:
            result.problem(f"part {index}: {name}")
    return payload, False


def _text_of(part: Message, result: ParsedMessage, index: str) -> str | None:
    payload, raw = decoded_payload(part, result, index)
    if raw:
        return None
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    return decode_bytes(payload, charset, result, where=f"part {index}: ")


def walk(part: Message, result: ParsedMessage, index: str, *, in_alternative: bool, bodies: Bodies) -> None:
    """The bodies and attachments of `part` (numbered `index`, "" for the whole mail) into
    `result` and `bodies`."""
    ctype = part_content_type(part)
    if part.is_multipart():
        if ctype.startswith("message/"):
            _nested_message(part, result, index, ctype)
        else:
            _multipart(part, result, index, ctype, bodies)
    elif ctype.startswith("multipart/"):
        _multipart_without_boundary(part, result, index or "1", ctype, bodies)
    else:
        _leaf(part, result, index or "1", ctype, in_alternative, bodies)


def _nested_message(part: Message, result: ParsedMessage, index: str, ctype: str) -> None:
    """message/rfc822 (and message/delivery-status etc.): one attachment, not its innards."""
    data = b""
    try:
        data = b"".join(_serialize(sub, result_linesep(part)) for sub in part.get_payload())
    except Exception as exc:
        result.problem(f"part {index}: nested message could not be re-serialised ({type(exc).__name__})")
        data = raw_body(part)
    result.attachments.append(attachment(part, data, result, index, content_type=ctype))


def _multipart(part: Message, result: ParsedMessage, index: str, ctype: str, bodies: Bodies) -> None:
    try:
        children = list(part.get_payload())
    except Exception as exc:
        result.problem(f"part {index}: unreadable multipart ({type(exc).__name__}); kept raw")
        result.attachments.append(attachment(part, raw_body(part), result, index, raw_kept=True))
        return
    alternative = ctype == "multipart/alternative"
    for n, child in enumerate(children, start=1):
        try:
            walk(child, result, f"{index}.{n}" if index else str(n), in_alternative=alternative, bodies=bodies)
        except RecursionError:
            raise
        except Exception as exc:  # one unreadable part must not lose the parts after it
            result.problem(f"MIME structure unreadable ({type(exc).__name__}); kept raw")


def _multipart_without_boundary(part: Message, result: ParsedMessage, index: str, ctype: str,
                                bodies: Bodies) -> None:
    """The boundary is missing or never found: get_content() would raise KeyError."""
    result.problem(f"part {index}: {ctype} without usable boundary; kept raw")
    body = raw_body(part)
    # Keep the text readable too when nothing else is: the common case is a plain mail
    # mislabelled as multipart.
    if not bodies["text"] and body.strip():
        bodies["text"].append(decode_bytes(body, None))
    result.attachments.append(attachment(part, body, result, index, raw_kept=True,
                                         content_type="application/octet-stream"))


def body_kind(part: Message, ctype: str) -> str | None:
    """"text" or "html" when the part is a body candidate (not an attachment), else None."""
    if ctype not in ("text/plain", "text/html") or part_disposition(part) == "attachment":
        return None
    try:
        if part.get_filename():
            return None
    except Exception:
        return None
    return "text" if ctype == "text/plain" else "html"


def _leaf(part: Message, result: ParsedMessage, index: str, ctype: str, in_alternative: bool,
          bodies: Bodies) -> None:
    kind = body_kind(part, ctype)
    if kind is not None:
        if in_alternative and bodies[kind]:
            return  # a second alternative of the same type: the first one is the body
        text = _text_of(part, result, index)
        if text is not None:
            bodies[kind].append(text)
            return
    payload, raw = decoded_payload(part, result, index)
    result.attachments.append(attachment(part, payload, result, index, raw_kept=raw))


def declared_charset(parts: Iterable[Message]) -> str | None:
    """The first text charset declared among `parts` (a mail's, in order) that is not ASCII
    or UTF-8: the one headers.headers_into reads raw 8-bit header bytes in."""
    try:
        for part in parts:
            if part.get_content_maintype() == "text":
                charset = part.get_content_charset()
                if charset and codec_for(charset) not in (None, "ascii", "utf-8"):
                    return charset
    except Exception:
        pass
    return None


def defects(msg: Message, result: ParsedMessage) -> None:
    """The defects the email package found in the tree, as problems."""
    for part in iter_parts(msg):
        for defect in getattr(part, "defects", []) or []:
            defect_problem(type(defect).__name__, result)


def defect_problem(name: str, result: ParsedMessage) -> None:
    if name in ("MissingHeaderBodySeparatorDefect",):
        result.problem("malformed header section (a line without a colon)")
    elif name in ("StartBoundaryNotFoundDefect", "CloseBoundaryNotFoundDefect", "NoBoundaryInMultipartDefect",
                  "MultipartInvariantViolationDefect", "InvalidMultipartContentTransferEncodingDefect"):
        result.problem(name)


def iter_parts(msg: Message) -> Iterator[Message]:
    stack = [msg]
    while stack:
        part = stack.pop()
        yield part
        if part.is_multipart():
            try:
                stack.extend(reversed(part.get_payload()))
            except Exception:
                pass
