"""Readers: a manuscript file (.txt, .md, .epub) in, a `Book` of chapters and clean paragraphs out.

Every reader cleans its text with `clean` (the one text-cleaning path) and tells scripts and
languages apart with `script`.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.errors import InputError
from pipeline.reading.book import DEFAULT_SKIP_KINDS, Book, Chapter, Paragraph, ReadOptions
from pipeline.reading.epub import read_epub
from pipeline.reading.markdown import read_markdown
from pipeline.reading.plaintext import read_txt

READERS = {".txt": read_txt, ".text": read_txt, ".md": read_markdown, ".markdown": read_markdown, ".epub": read_epub}

__all__ = ["Book", "Chapter", "Paragraph", "ReadOptions", "DEFAULT_SKIP_KINDS", "READERS", "read_book"]


def read_book(path: str | Path, options: ReadOptions = ReadOptions()) -> Book:
    """The book in `path`, read by the reader its suffix names."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(path, "", f"unsupported manuscript type {path.suffix or '(no suffix)'!r}",
                         f"give one of {', '.join(sorted(READERS))}")
    if not path.is_file():
        raise InputError(path, "", "file not found" if not path.exists() else "not a file",
                         "check the path given as input=...")
    return reader(path, options)
