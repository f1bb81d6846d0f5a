"""Text decoding: a MIME charset name to a Python codec (with the aliases seen in the wild),
and bytes to text that PostgreSQL stores, never raising — UTF-8 mislabelled as a single-byte
charset, Microsoft's ISO-2022-JP and undeclared cp1252 included."""
from __future__ import annotations

import codecs
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import ParsedMessage

# Charset names seen in the wild that Python's codecs do not know by that name.
_CHARSET_ALIASES = {
    "x-unknown": "",
    "unknown-8bit": "",
    "x-user-defined": "",
    "default": "",
    "x-mac-cyrillic": "mac_cyrillic",
    "x-mac-roman": "mac_roman",
    "x-mac-greek": "mac_greek",
    "x-mac-turkish": "mac_turkish",
    "x-mac-ce": "mac_latin2",
    "x-mac-centraleurroman": "mac_latin2",
    "x-mac-icelandic": "mac_iceland",
    "macintosh": "mac_roman",
    "x-sjis": "shift_jis",
    "x-euc-jp": "euc_jp",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "x-gbk": "gbk",
    "gb2312": "gb18030",  # a superset; mails labelled gb2312 often use GBK characters
    "gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "utf8": "utf-8",
    "x-utf8": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
    "ansi_x3.4-1968": "ascii",
    "us-ascii": "cp1252",  # 8-bit bytes in "us-ascii" text are nearly always cp1252
    "ascii": "cp1252",
    "iso-8859-1": "cp1252",  # as browsers do (WHATWG encoding standard)
    "latin1": "cp1252",
}


def clean_text(text: str) -> str:
    """Text that PostgreSQL accepts: no NUL, no lone surrogates."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def codec_for(charset: str | None) -> str | None:
    """A Python codec name for a MIME charset, or None when unknown/unusable."""
    if not charset:
        return None
    name = charset.strip().strip('"').strip("'").lower()
    if name in _CHARSET_ALIASES:
        return _CHARSET_ALIASES[name] or None
    for candidate in (name, name.replace("_", "-"), name[2:] if name.startswith("x-") else ""):
        if not candidate:
            continue
        try:
            return codecs.lookup(candidate).name
        except LookupError:
            continue
    return None


def decode_bytes(data: bytes, charset: str | None, problems: ParsedMessage | None = None, where: str = "") -> str:
    """Decode text in its declared charset, falling back to UTF-8 then cp1252. Never raises."""
    codec = codec_for(charset)
    if charset and codec is None and problems is not None:
        problems.problem(f"{where}unknown charset {charset!r}; decoded as UTF-8/cp1252")
    if codec and _is_single_byte(codec) and _is_multibyte_utf8(data):
        # UTF-8 mislabelled as a single-byte charset ("ProtecciÃ³n"): text in a real
        # single-byte charset is practically never valid UTF-8 with multi-byte sequences.
        if problems is not None:
            problems.problem(f"{where}text labelled {charset} is UTF-8; decoded as UTF-8")
        return clean_text(data.decode("utf-8"))
    if codec:
        try:
            return clean_text(data.decode(codec))
        except (UnicodeDecodeError, LookupError):
            pass
        except Exception:  # some codecs (utf-7, iso-2022) raise odd errors on garbage
            pass
        if codec.startswith("iso2022_jp"):
            # Microsoft's ISO-2022-JP (CP50220) carries NEC/IBM extension characters that
            # Python's codec refuses; they decode through Shift_JIS (cp932).
            try:
                return clean_text(_iso2022jp_via_cp932(data))
            except (UnicodeDecodeError, ValueError):
                pass
    if codec != "utf-8":
        try:
            return clean_text(data.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    if codec and problems is not None:
        problems.problem(f"{where}text is not valid {charset}; decoded with a fallback")
    if codec and codec != "utf-8":
        # A multi-byte charset with a few bad bytes: keep the rest readable.
        try:
            return clean_text(data.decode(codec, "replace"))
        except Exception:
            pass
    # Undeclared or mislabelled UTF-8: nearly always Windows-1252/Latin-1 in practice.
    # cp1252 leaves five bytes undefined; latin-1 maps everything.
    try:
        return clean_text(data.decode("cp1252"))
    except UnicodeDecodeError:
        return clean_text(data.decode("latin-1"))


_SINGLE_BYTE_PREFIXES = ("cp125", "iso8859", "koi8", "mac_", "latin_1", "cp437", "cp85", "cp86", "cp874",
                         "tis_620", "ptcp154", "kz1048", "hp_roman8", "ascii")
_NON_ASCII = re.compile(rb"[\x80-\xff]")


def _is_single_byte(codec: str) -> bool:
    return codec.startswith(_SINGLE_BYTE_PREFIXES)


def _is_multibyte_utf8(data: bytes) -> bool:
    """Valid UTF-8 with at least one multi-byte sequence (pure ASCII is not evidence)."""
    if not _NON_ASCII.search(data):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _iso2022jp_via_cp932(data: bytes) -> str:
    out = bytearray()
    mode = "ascii"
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == 0x1B:
            seq = data[i + 1:i + 3]
            if seq in (b"$B", b"$@"):
                mode = "jis"
            elif seq in (b"(B", b"(J"):
                mode = "ascii"
            elif seq == b"(I":
                mode = "kana"
            else:
                raise ValueError("unknown escape sequence")
            i += 3
            continue
        if mode == "jis" and b not in (0x0A, 0x0D):
            if i + 1 >= n:
                raise ValueError("truncated")
            c1, c2 = b, data[i + 1]
            if c1 & 1:
                s2 = c2 + 0x1F
                if s2 >= 0x7F:
                    s2 += 1
            else:
                s2 = c2 + 0x7E
            s1 = ((c1 - 0x21) >> 1) + 0x81
            if s1 > 0x9F:
                s1 += 0x40
            out += bytes((s1, s2))
            i += 2
            continue
        out.append(b + 0x80 if mode == "kana" and 0x21 <= b <= 0x5F else b)
        i += 1
    return bytes(out).decode("cp932")
