"""Plain text manuscripts (.txt): chapters from heading lines, paragraphs from blank lines."""
from __future__ import annotations

from pathlib import Path

from pipeline.errors import InputError
from pipeline.reading.book import Book, ChapterCollector, ReadOptions, opening_title, speakable_count
from pipeline.reading.clean import clean_paragraph, has_blank_lines, split_paragraphs
from pipeline.reading.decode import decode_text
from pipeline.reading.headings import HeadingMatcher
from pipeline.reading.script import detect_language


def read_txt(path: Path, options: ReadOptions) -> Book:
    text, encoding = decode_text(path.read_bytes(), path, options.encoding)
    chapters = ChapterCollector(opening_title=path.stem)
    headings = HeadingMatcher(options.chapter_pattern)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    one_per_line = not has_blank_lines(text)

    body: list[str] = []  # lines since the last heading
    body_start = 1

    def flush() -> None:
        for paragraph, line in split_paragraphs("\n".join(body), first_line=body_start, one_per_line=one_per_line):
            chapters.paragraph(paragraph, f"line {line}")
        body.clear()

    for number, line in enumerate(lines, 1):
        # In blank-line layout a heading stands alone: after a blank line or at the start.
        alone = one_per_line or number == 1 or not lines[number - 2].strip()
        title = headings.title(line) if alone else None
        if title is None:
            if not body:
                body_start = number
            body.append(line)
            continue
        flush()
        chapters.heading(clean_paragraph(title), clean_paragraph(title), f"line {number}")
    flush()
    if not chapters.chapters:
        raise InputError(path, "", "the file has no readable text", "give a manuscript with text in it")
    if chapters.opening and len(chapters.chapters) > 1:
        opening = chapters.chapters[0]
        opening.title = opening_title(opening, detect_language(" ".join(p.text for p in opening.paragraphs[:20])))
    warnings = [] if encoding in ("utf-8", "ascii") else [f"{path.name}: read as {encoding}"]
    return Book(title=path.stem, author="", language=None, source=str(path), chapters=chapters.chapters,
                warnings=warnings, source_characters=speakable_count(text))
