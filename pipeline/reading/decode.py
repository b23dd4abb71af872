"""Bytes of a text file to str: UTF-8 (with or without BOM), UTF-16, UTF-32, GB18030."""
from __future__ import annotations

import codecs
import re
from pathlib import Path

from pipeline.errors import InputError

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# One GB18030 character: four-byte, two-byte, or (group 1) a two-byte character
# in the GB2312 area, where almost every character of real Chinese text lies.
_GB_CHAR_RE = re.compile(
    rb"([\xa1-\xf7][\xa1-\xfe])|[\x81-\xfe][\x30-\x39][\x81-\xfe][\x30-\x39]|[\x81-\xfe][\x40-\x7e\x80-\xfe]"
)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_HINT = "save the file as UTF-8 (or name its encoding with plan.encoding=...)"


def decode_text(data: bytes, path: str | Path, encoding: str | None = None) -> tuple[str, str]:
    """The text of a file and the encoding it was read with.

    Raises InputError for empty input, binary data, or bytes that are none of the
    supported encodings, naming the byte offset and line of the first bad byte.
    """
    if not data.strip():
        raise InputError(path, "", "the file is empty" if not data else "the file holds only whitespace",
                         "give a manuscript with text in it")
    if encoding:
        return _decode(data, encoding, path), encoding
    for bom, name in _BOMS:
        if data.startswith(bom):
            return _decode(data[len(bom):], name, path), name
    utf16 = _guess_utf16(data)
    if utf16:
        return _decode(data, utf16, path), utf16
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise InputError(path, _place(data, offset), "this looks like a binary file, not text (it holds NUL bytes)",
                         "give a .txt, .md or .epub manuscript")
    try:
        return _checked(data.decode("utf-8"), path, data), "utf-8"
    except UnicodeDecodeError as utf8_error:
        if _looks_like_gb18030(data):
            return _checked(data.decode("gb18030"), path, data), "gb18030"
        raise InputError(path, _place(data, utf8_error.start),
                         f"the text is not UTF-8, UTF-16 or GB18030 (byte 0x{data[utf8_error.start]:02x})",
                         _HINT) from None


def _decode(data: bytes, encoding: str, path: str | Path) -> str:
    try:
        return _checked(data.decode(encoding), path, data)
    except UnicodeDecodeError as e:
        raise InputError(path, f"byte offset {e.start}", f"the text is not valid {encoding}", _HINT) from None
    except LookupError:
        raise InputError(path, "", f"unknown encoding {encoding!r}", "name a Python codec, e.g. utf-8 or gb18030") from None


def _checked(text: str, path: str | Path, data: bytes) -> str:
    """Reject decoded text that is mostly control characters (binary data that happened to decode)."""
    sample = text[:100_000]
    if sample and len(_CONTROL_RE.findall(sample)) > 0.01 * len(sample):
        raise InputError(path, "", "this looks like a binary file, not text (many control characters)",
                         "give a .txt, .md or .epub manuscript")
    return text


def _guess_utf16(data: bytes) -> str | None:
    """UTF-16 without a BOM: NUL bytes (from ASCII-range characters) mostly on one side of each pair,
    and the decoded text printable."""
    sample = data[:65536]
    if len(data) % 2 or b"\x00" not in sample:
        return None
    even_nuls, odd_nuls = sample[0::2].count(0), sample[1::2].count(0)
    encoding = "utf-16-le" if odd_nuls > 4 * even_nuls else "utf-16-be" if even_nuls > 4 * odd_nuls else None
    if encoding is None:
        # CJK text puts NULs on both sides (一 is U+4E00): pick the byte order whose characters are
        # mostly of common scripts.
        scores = {name: _common_share(sample, name) for name in ("utf-16-le", "utf-16-be")}
        best = max(scores, key=lambda name: scores[name])
        return best if scores[best] >= 0.9 and scores[best] > min(scores.values()) + 0.2 else None
    try:
        text = sample.decode(encoding)
    except UnicodeDecodeError:
        return None
    printable = sum(ch.isprintable() or ch in "\n\r\t" for ch in text)
    return encoding if printable >= 0.95 * len(text) else None


_COMMON_RANGES = (
    (0x09, 0x0D), (0x20, 0x7E), (0xA0, 0x24F), (0x2000, 0x206F), (0x3000, 0x30FF), (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF),
)


def _common_share(sample: bytes, encoding: str) -> float:
    """The share of characters in common scripts (Latin, CJK, kana, Hangul, their punctuation)."""
    text = sample[: len(sample) // 2 * 2].decode(encoding, errors="replace")
    if not text:
        return 0.0
    common = sum(any(lo <= ord(ch) <= hi for lo, hi in _COMMON_RANGES) for ch in text)
    return common / len(text)


def _looks_like_gb18030(data: bytes) -> bool:
    """Valid GB18030 whose characters are mostly common Chinese (not Latin-1 or CP1252 bytes)."""
    try:
        data.decode("gb18030")
    except UnicodeDecodeError:
        return False
    chars = _GB_CHAR_RE.findall(data)
    common = sum(1 for c in chars if c)
    return bool(chars) and common >= 0.8 * len(chars)


def _place(data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    return f"line {line}, byte offset {offset}"
