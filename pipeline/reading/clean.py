"""Clean text: the "normalized text" that segments are cut from and join back to.

Only invisible and layout matters change here (Unicode composition, invisible and
control characters, odd spaces, line breaks inside a paragraph, fullwidth ASCII,
double hyphens); words, numbers and punctuation stay as the author wrote them.
Spoken forms (numbers, abbreviations, ...) are made later, per segment, in
`pipeline.text.normalize`.
"""
from __future__ import annotations

import re
import sys
import unicodedata
from functools import cache

from pipeline.reading.script import CJK_PUNCT_CLASS, HAN_CLASS

# Control characters (except tab and newline) and odd spaces become a plain space.
_SPACE = dict.fromkeys(
    [c for c in range(0x00, 0x20) if c not in (0x09, 0x0A)]
    + list(range(0x7F, 0xA0))
    + [0x00A0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
    + list(range(0x2000, 0x200B)),
    " ",
)
# Fullwidth digits and letters become ASCII so numbers in Chinese text read as numbers.
_FULLWIDTH = {c: c - 0xFEE0 for c in list(range(0xFF10, 0xFF1A)) + list(range(0xFF21, 0xFF3B)) + list(range(0xFF41, 0xFF5B))}
_TABLE = {**_SPACE, **_FULLWIDTH}

_CJK = f"[{HAN_CLASS}{CJK_PUNCT_CLASS}]"
_CJK_LINE_BREAK_RE = re.compile(rf"(?<={_CJK})\s*\n\s*|\s*\n\s*(?={_CJK})")
_HYPHEN_BREAK_RE = re.compile(r"(?<=[A-Za-z])-[ \t]*\n\s*(?=[a-z])")
_SPACES_RE = re.compile(r"\s+")
_DOUBLE_HYPHEN_RE = re.compile(r"(?<!-)---?(?!-)")
_BLANK_LINE_RE = re.compile(r"\n[ \t]*\n")


def is_invisible(char: str) -> bool:
    """Whether `char` is an invisible format character, dropped from text outright: Unicode category
    Cf (zero-width space and joiners, word joiner, BOM, soft hyphen, bidirectional marks and
    isolates, tag characters, ...). The one definition the pipeline uses; the model's own clean-up
    (moss_model.text_normalize) drops the same characters, as part of all of category C."""
    return unicodedata.category(char) == "Cf"


@cache
def _invisible() -> dict[int, None]:
    return dict.fromkeys(c for c in range(sys.maxunicode + 1) if is_invisible(chr(c)))


def drop_invisible(text: str) -> str:
    """`text` without its invisible format characters (`is_invisible`)."""
    return text.translate(_invisible())


def clean_paragraph(text: str) -> str:
    """One paragraph as a single clean line."""
    text = drop_invisible(unicodedata.normalize("NFC", text).translate(_TABLE))
    text = _HYPHEN_BREAK_RE.sub("-", text)
    # A line break next to Chinese text is no word break; elsewhere it is a space.
    text = _CJK_LINE_BREAK_RE.sub("", text)
    text = _SPACES_RE.sub(" ", text).strip()
    return _DOUBLE_HYPHEN_RE.sub("—", text)


def split_paragraphs(text: str, *, first_line: int = 1, one_per_line: bool | None = None) -> list[tuple[str, int]]:
    """Paragraphs of plain text, cleaned, with the 1-based line each starts on.

    Blank lines separate paragraphs. Text without any blank line is taken as one
    paragraph per line (a common layout for Chinese books and chat-style input);
    `one_per_line` forces either reading.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if one_per_line is None:
        one_per_line = not has_blank_lines(text)
    paragraphs: list[tuple[str, int]] = []
    block: list[str] = []
    start = 0

    def flush() -> None:
        cleaned = clean_paragraph("\n".join(block))
        if cleaned:
            paragraphs.append((cleaned, start))
        block.clear()

    for number, line in enumerate(lines, first_line):
        if line.strip():
            if not block:
                start = number
            block.append(line)
            if one_per_line:
                flush()
        elif block:
            flush()
    if block:
        flush()
    return paragraphs


def has_blank_lines(text: str) -> bool:
    """True when some blank line separates two lines of text."""
    return _BLANK_LINE_RE.search(text.replace("\r\n", "\n").replace("\r", "\n").strip()) is not None
