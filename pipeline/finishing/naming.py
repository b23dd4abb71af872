"""File names built from manuscript text, made safe: no separators, no dots at the start,
no control or reserved characters, bounded length."""

from __future__ import annotations

import re
import unicodedata

_UNSAFE = re.compile(r"[^\w\- ]+", re.UNICODE)
_SPACES = re.compile(r"[\s_\-]+")
MAX_SLUG = 48


def slug(text: str, fallback: str) -> str:
    """A lowercase, filesystem-safe rendering of `text` (letters of any script kept)."""
    text = unicodedata.normalize("NFKC", text or "")
    text = _UNSAFE.sub(" ", text)
    text = _SPACES.sub("-", text.strip()).strip("-").lower()
    return text[:MAX_SLUG].rstrip("-") or fallback


def chapter_stem(index: int | None, title: str) -> str:
    """`007-the-whiteness-of-the-whale` for chapter index 6; the book's own stem when index is None."""
    if index is None:
        return slug(title, "book")
    return f"{index + 1:03d}-{slug(title, 'chapter')}"
