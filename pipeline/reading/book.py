"""What a reader gives back: a book as chapters of clean paragraphs."""
from __future__ import annotations

from dataclasses import dataclass, field

# EPUB page kinds left out by default (EPUB 3 structural semantics / EPUB 2 guide
# types, plus "non-linear" for spine items marked linear="no").
DEFAULT_SKIP_KINDS = (
    "cover", "titlepage", "title-page", "toc", "landmarks", "loi", "lot", "copyright-page",
    "copyright", "colophon", "index", "non-linear",
)


@dataclass(frozen=True)
class Paragraph:
    text: str  # cleaned (see pipeline.normalize_text)
    place: str  # where it starts in the source: "line 12" or "OPS/chapter_001.xhtml"


@dataclass
class Chapter:
    title: str
    paragraphs: list[Paragraph]
    source: str  # where the chapter starts


@dataclass(frozen=True)
class Cover:
    data: bytes
    mime: str  # image/jpeg, image/png, ...


@dataclass
class Book:
    title: str
    author: str
    language: str | None  # from the source's metadata, if it says
    source: str  # the file read
    chapters: list[Chapter]
    skipped: list[str] = field(default_factory=list)  # parts left out on purpose, and why
    warnings: list[str] = field(default_factory=list)
    cover: Cover | None = None  # the cover image, when the source has one (EPUB)

    @property
    def characters(self) -> int:
        return sum(len(p.text) for c in self.chapters for p in c.paragraphs)


@dataclass(frozen=True)
class ReadOptions:
    skip_kinds: tuple[str, ...] = DEFAULT_SKIP_KINDS  # EPUB pages left out
    chapter_pattern: str | None = None  # plain text: a regex a whole heading line matches
    encoding: str | None = None  # .txt/.md: force an encoding instead of detecting it


class ChapterCollector:
    """Builds chapters from a stream of headings and paragraphs.

    Paragraphs before the first heading go to an opening chapter titled
    `opening_title`. A heading's own text is the first paragraph of its chapter,
    so the narrator reads the title.
    """

    def __init__(self, opening_title: str) -> None:
        self.opening_title = opening_title
        self.chapters: list[Chapter] = []

    def heading(self, title: str, spoken: str, place: str) -> None:
        self.chapters.append(Chapter(title, [], place))
        self.paragraph(spoken, place)

    def paragraph(self, text: str, place: str) -> None:
        if not text:
            return
        if not self.chapters:
            self.chapters.append(Chapter(self.opening_title, [], place))
        self.chapters[-1].paragraphs.append(Paragraph(text, place))
