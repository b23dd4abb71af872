"""Markdown manuscripts (.md): headings are chapters.

The chapter level is the highest heading level in the file, except that a single
top-level heading above several second-level ones is the book's title. Deeper
headings stay in the text as paragraphs. Code blocks are left out; links,
emphasis and other inline markup keep only their words.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError
from pipeline.reading.clean import clean_paragraph
from pipeline.reading.script import detect_language
from pipeline.reading.book import (
    Book, ChapterCollector, ReadOptions, count_skip, opening_title, speakable_count,
)
from pipeline.reading.decode import decode_text

_ATX_RE = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_SETEXT_RE = re.compile(r"^ {0,3}(=+|-+)\s*$")
_FENCE_RE = re.compile(r"^ {0,3}(```|~~~)")
_RULE_RE = re.compile(r"^ {0,3}([-*_])(?:\s*\1){2,}\s*$")
_LIST_ITEM_RE = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+")
_QUOTE_RE = re.compile(r"^\s*(?:>\s?)+")
_TABLE_RULE_RE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")
_FRONT_MATTER_KEY_RE = re.compile(r"^(title|author)\s*:\s*(.+?)\s*$", re.IGNORECASE)

_INLINE_RULES = [
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),  # images
    (re.compile(r"\[\^[^\]]+\]:?"), ""),  # footnote markers
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links keep their words
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # reference links
    (re.compile(r"<(https?://[^>]+)>"), r"\1"),  # autolinks
    (re.compile(r"<[^>\n]+>"), ""),  # inline HTML tags
    (re.compile(r"`([^`]*)`"), r"\1"),  # inline code
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # strong
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),  # emphasis
    (re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])"), r"\1"),
    (re.compile(r"~~(.+?)~~"), r"\1"),  # strikethrough
    (re.compile(r"\s*\|\s*"), " "),  # table cell borders
]


@dataclass(frozen=True)
class _Block:
    kind: str  # "heading" | "paragraph"
    text: str
    line: int
    level: int = 0


def read_markdown(path: Path, options: ReadOptions) -> Book:
    text, encoding = decode_text(path.read_bytes(), path, options.encoding)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    meta, body_start = _front_matter(lines)
    counts: dict[str, int] = {}
    count_skip(counts, "front matter", "\n".join(lines[:body_start]))
    blocks, skipped = _blocks(lines, body_start, counts, options.keep_code)

    levels = [b.level for b in blocks if b.kind == "heading"]
    title = meta.get("title", "")
    chapter_level = min(levels, default=0)
    if levels.count(1) == 1 and 2 in levels:
        chapter_level = 2
        title = title or next(b.text for b in blocks if b.kind == "heading" and b.level == 1)
    title = title or path.stem

    chapters = ChapterCollector(opening_title=title)
    for block in blocks:
        place = f"line {block.line}"
        if block.kind == "heading" and block.level == chapter_level:
            chapters.heading(block.text, block.text, place)
        elif block.kind == "heading" and block.level == 1 and chapter_level == 2:
            count_skip(counts, "book title heading", block.text)
            skipped.append(f"the book title heading at line {block.line}")
        else:
            chapters.paragraph(block.text, place)
    if not chapters.chapters:
        raise InputError(path, "", "the file has no readable text", "give a manuscript with text in it")
    if chapters.opening and len(chapters.chapters) > 1 and title == path.stem:  # no better title than the file's name
        opening = chapters.chapters[0]
        opening.title = opening_title(opening, detect_language(" ".join(p.text for p in opening.paragraphs[:20])))
    warnings = [] if encoding in ("utf-8", "ascii") else [f"{path.name}: read as {encoding}"]
    return Book(title=title, author=meta.get("author", ""), language=None, source=str(path),
                chapters=chapters.chapters, skipped=skipped, warnings=warnings,
                source_characters=speakable_count(text), skipped_characters=counts)


def _front_matter(lines: list[str]) -> tuple[dict[str, str], int]:
    """Title and author from a YAML front matter block, and the index of the first body line."""
    if not lines or lines[0].strip() != "---":
        return {}, 0
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            meta = {}
            for line in lines[1:end]:
                m = _FRONT_MATTER_KEY_RE.match(line)
                if m:
                    meta[m.group(1).lower()] = m.group(2).strip("\"'")
            return meta, end + 1
    return {}, 0


def _blocks(lines: list[str], start: int, counts: dict[str, int], keep_code: bool) -> tuple[list[_Block], list[str]]:
    """Headings and paragraphs; `counts` gets the letters and digits left out, by reason."""
    blocks: list[_Block] = []
    skipped: list[str] = []
    pending: list[str] = []
    pending_line = 0
    fence_line = 0

    def spoken(raw: str) -> str:
        text = clean_paragraph(inline_text(raw))
        lost = speakable_count(raw) - speakable_count(text)
        if lost > 0:  # link targets, images, HTML tags, footnote markers
            counts["Markdown markup"] = counts.get("Markdown markup", 0) + lost
        return text

    def flush() -> None:
        text = spoken("\n".join(pending))
        if text:
            blocks.append(_Block("paragraph", text, pending_line))
        pending.clear()

    for index in range(start, len(lines)):
        line, number = lines[index], index + 1
        if _FENCE_RE.match(line):
            flush()
            if fence_line:
                if not keep_code:
                    skipped.append(f"code block at lines {fence_line}-{number}")
                fence_line = 0
            else:
                fence_line = number
            count_skip(counts, "code", line)  # the fence's info string ("python")
            continue
        if fence_line:
            if keep_code:
                text = clean_paragraph(line)
                if text:
                    blocks.append(_Block("paragraph", text, number))
            else:
                count_skip(counts, "code", line)
            continue
        if not line.strip():
            flush()
            continue
        setext = _SETEXT_RE.match(line)
        if setext and pending and not _LIST_ITEM_RE.match(pending[0]):
            text = spoken("\n".join(pending))
            pending.clear()
            blocks.append(_Block("heading", text, pending_line, 1 if setext.group(1)[0] == "=" else 2))
            continue
        if _RULE_RE.match(line) or _TABLE_RULE_RE.match(line):
            flush()
            continue
        atx = _ATX_RE.match(line)
        if atx:
            flush()
            text = spoken(atx.group(2))
            if text:
                blocks.append(_Block("heading", text, number, len(atx.group(1))))
            continue
        line = _QUOTE_RE.sub("", line)
        if _LIST_ITEM_RE.match(line):
            flush()
            line = _LIST_ITEM_RE.sub("", line)
        if not pending:
            pending_line = number
        pending.append(line)
    flush()
    if fence_line:
        skipped.append(f"unclosed code block from line {fence_line}")
    return blocks, skipped


_ESCAPE_RE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])")
_ESCAPED_RE = re.compile("[\U000F0000-\U000F00FF]")


def inline_text(text: str) -> str:
    """The words of Markdown inline markup."""
    # Escaped characters are parked in a private-use plane so no rule sees them.
    text = _ESCAPE_RE.sub(lambda m: chr(0xF0000 + ord(m.group(1))), text)
    for pattern, replacement in _INLINE_RULES:
        text = pattern.sub(replacement, text)
    return _ESCAPED_RE.sub(lambda m: chr(ord(m.group(0)) - 0xF0000), text)
