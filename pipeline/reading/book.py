"""What a reader gives back: a book as chapters of clean paragraphs."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# EPUB page kinds left out by default (EPUB 3 structural semantics / EPUB 2 guide
# types, plus "non-linear" for spine items marked linear="no").
DEFAULT_SKIP_KINDS = (
    "cover", "titlepage", "title-page", "toc", "landmarks", "loi", "lot", "copyright-page",
    "copyright", "colophon", "index", "non-linear",
)


@dataclass(frozen=True)
class Paragraph:
    text: str  # cleaned (see pipeline.reading.clean)
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
    # The account of the source's letters and digits (see `speakable_count`): how many the
    # source holds, and how many each kind of known skip left out. None: the reader kept none.
    source_characters: int | None = None
    skipped_characters: dict[str, int] = field(default_factory=dict)

    @property
    def characters(self) -> int:
        return sum(len(p.text) for c in self.chapters for p in c.paragraphs)


@dataclass(frozen=True)
class ReadOptions:
    skip_kinds: tuple[str, ...] = DEFAULT_SKIP_KINDS  # EPUB pages left out
    chapter_pattern: str | None = None  # plain text: a regex a whole heading line matches
    encoding: str | None = None  # .txt/.md: force an encoding instead of detecting it
    keep_page_numbers: bool = False  # EPUB: read page-break markers (printed page numbers) aloud
    keep_code: bool = False  # EPUB and Markdown: read code listings aloud
    max_archive_bytes: int = 512 * 2**20  # EPUB: refused when its members would inflate past this
    max_compression_ratio: float = 200.0  # EPUB: refused when a large member is compressed more than this


_SPEAKABLE_RUN_RE = re.compile(r"[^\W_]+")


def speakable_count(text: str) -> int:
    """Letters and digits of any script: the characters the plan's coverage check accounts for."""
    return sum(map(len, _SPEAKABLE_RUN_RE.findall(text)))


def count_skip(counts: dict[str, int], reason: str, text: str) -> None:
    """Add the letters and digits of `text`, left out on purpose, to `counts[reason]`."""
    n = speakable_count(text)
    if n:
        counts[reason] = counts.get(reason, 0) + n


class ChapterCollector:
    """Builds chapters from a stream of headings and paragraphs.

    Paragraphs before the first heading go to an opening chapter titled
    `opening_title`. A heading's own text is the first paragraph of its chapter,
    so the narrator reads the title.
    """

    def __init__(self, opening_title: str) -> None:
        self.opening_title = opening_title
        self.chapters: list[Chapter] = []
        self.opening = False  # whether the first chapter is text before any heading

    def heading(self, title: str, spoken: str, place: str) -> None:
        self.chapters.append(Chapter(title, [], place))
        self.paragraph(spoken, place)

    def paragraph(self, text: str, place: str) -> None:
        if not text:
            return
        if not self.chapters:
            self.chapters.append(Chapter(self.opening_title, [], place))
            self.opening = True
        self.chapters[-1].paragraphs.append(Paragraph(text, place))


_TITLE_LIKE_MAX = 40
_SENTENCE_END_RE = re.compile(r"[.!?。！？…]$")
OPENING_TITLES = {"en": "Opening", "zh": "开篇", "ja": "冒頭", "ko": "서두", "de": "Anfang", "fr": "Ouverture",
                  "es": "Comienzo"}


def opening_title(chapter: Chapter, language: str) -> str:
    """A title for text that comes before the first heading: its first line when that reads as
    a title (short, no sentence end), else a word for "opening" in the book's language."""
    first = chapter.paragraphs[0].text if chapter.paragraphs else ""
    if first and len(first) <= _TITLE_LIKE_MAX and not _SENTENCE_END_RE.search(first):
        return first
    return OPENING_TITLES.get(language, OPENING_TITLES["en"])
