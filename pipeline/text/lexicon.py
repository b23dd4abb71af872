"""Pronunciation control: a per-book lexicon and optional Pinyin for polyphonic characters.

Lexicon file: UTF-8, one entry a line, ``term<TAB>pronunciation``; blank lines
and lines starting with ``#`` are ignored. The pronunciation is one of

- tone-numbered Pinyin: ``重庆<TAB>chong2 qing4``
- IPA between slashes: ``Queequeg<TAB>/ˈkwiːkwɛɡ/``
- a respelling: ``Ahab<TAB>Ay-hab``

Terms match case-sensitively, longest first at each place. A term that starts
or ends with a Latin letter or digit only matches whole words there; Chinese
terms match anywhere, since Chinese has no spaces between words. Replacements
are passed to the model as they are (never normalized again).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from pipeline.errors import InputError
from pipeline.reading.script import HAN_CLASS
from pipeline.text.inline import is_ipa, is_pinyin
from pipeline.text.normalize import Piece

_WORD_EDGE = re.compile(r"[A-Za-z0-9\u00c0-\u024f]")
_HAN_RUN_RE = re.compile(f"[{HAN_CLASS}]+")
POLYPHONE_PREFIX = "pinyin:"


@dataclass(frozen=True)
class LexiconEntry:
    term: str
    pronunciation: str
    kind: str  # "pinyin" | "ipa" | "respelling"
    line: int = 0


def entry_kind(pronunciation: str) -> str:
    if is_ipa(pronunciation):
        return "ipa"
    if is_pinyin(pronunciation):
        return "pinyin"
    return "respelling"


class Lexicon:
    """Rewrites terms into their pronunciations and says which entries it used."""

    def __init__(self, entries: Iterable[LexiconEntry] = (), polyphones: str = "") -> None:
        self.entries = {e.term: e for e in entries}
        self.polyphones = frozenset(polyphones)
        self._term_re = _terms_regex(self.entries) if self.entries else None
        self._pinyin = None

    @classmethod
    def parse(cls, text: str, source: str = "<lexicon>", polyphones: str = "") -> "Lexicon":
        entries: dict[str, LexiconEntry] = {}
        for number, raw in enumerate(text.lstrip("\ufeff").splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            term, tab, pronunciation = raw.partition("\t")
            term, pronunciation = term.strip(), pronunciation.strip()
            if not tab or not term or not pronunciation:
                raise InputError(source, f"line {number}", f"expected 'term<TAB>pronunciation', got {raw!r}",
                                 "separate the term and its Pinyin, /IPA/ or respelling with one tab")
            if term in entries:
                raise InputError(source, f"line {number}", f"term {term!r} is already defined on line {entries[term].line}",
                                 "keep one entry per term")
            entries[term] = LexiconEntry(term, pronunciation, entry_kind(pronunciation), number)
        return cls(entries.values(), polyphones)

    @classmethod
    def load(cls, path: str | Path | None, polyphones: str = "") -> "Lexicon":
        """The lexicon file at `path` (None: no entries), plus the polyphonic characters to render."""
        if path is None:
            return cls((), polyphones)
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise InputError(path, "", "lexicon file not found", "check the path given as lexicon=...") from None
        except UnicodeDecodeError as e:
            raise InputError(path, f"byte {e.start}", "lexicon is not UTF-8", "save the lexicon as UTF-8") from None
        return cls.parse(text, str(path), polyphones)

    def __bool__(self) -> bool:
        return bool(self.entries or self.polyphones)

    def digest(self) -> str:
        """A short hash of the entries and polyphones, for the plan's metadata."""
        lines = sorted(f"{e.term}\t{e.pronunciation}" for e in self.entries.values())
        lines.append("polyphones\t" + "".join(sorted(self.polyphones)))
        return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16]

    def apply(self, pieces: Sequence[Piece]) -> tuple[list[Piece], list[str]]:
        """Pieces with lexicon terms (then listed polyphones) replaced; the entries used, in order."""
        used: list[str] = []
        out = list(pieces)
        if self._term_re is not None:
            out = self._replace_terms(self._term_re, out, used)
        if self.polyphones:
            out = self._render_polyphones(out, used)
        return out, list(dict.fromkeys(used))

    def _replace_terms(self, term_re: re.Pattern, pieces: list[Piece], used: list[str]) -> list[Piece]:
        out: list[Piece] = []
        for text, kind in pieces:
            if kind is not None:
                out.append((text, kind))
                continue
            pos = 0
            for m in term_re.finditer(text):
                entry = self.entries[m.group(0)]
                if m.start() > pos:
                    out.append((text[pos:m.start()], None))
                out.append((entry.pronunciation, entry.kind))
                used.append(entry.term)
                pos = m.end()
            if pos < len(text):
                out.append((text[pos:], None))
        return out

    def _render_polyphones(self, pieces: list[Piece], used: list[str]) -> list[Piece]:
        out: list[Piece] = []
        for text, kind in pieces:
            if kind is not None or not self.polyphones.intersection(text):
                out.append((text, kind))
                continue
            pos = 0
            for run in _HAN_RUN_RE.finditer(text):
                if not self.polyphones.intersection(run.group(0)):
                    continue
                syllables = self._syllables(run.group(0))
                for offset, ch in enumerate(run.group(0)):
                    if ch not in self.polyphones or not is_pinyin(syllables[offset]):
                        continue
                    at = run.start() + offset
                    if at > pos:
                        out.append((text[pos:at], None))
                    out.append((syllables[offset], "pinyin"))
                    used.append(POLYPHONE_PREFIX + ch)
                    pos = at + 1
            if pos < len(text):
                out.append((text[pos:], None))
        return out

    def _syllables(self, han: str) -> list[str]:
        """One tone-numbered syllable per character, read in context by pypinyin."""
        if self._pinyin is None:
            import pypinyin  # loads large dictionaries: only when polyphones are asked for

            self._pinyin = pypinyin
        rows = self._pinyin.pinyin(han, style=self._pinyin.Style.TONE3, neutral_tone_with_five=True)
        syllables = [row[0] for row in rows]
        return syllables if len(syllables) == len(han) else [""] * len(han)


def _terms_regex(entries: dict[str, LexiconEntry]) -> re.Pattern:
    alternatives = []
    for term in sorted(entries, key=len, reverse=True):
        pattern = re.escape(term)
        if _WORD_EDGE.match(term[0]):
            pattern = r"(?<![A-Za-z0-9\u00c0-\u024f])" + pattern
        if _WORD_EDGE.match(term[-1]):
            pattern += r"(?![A-Za-z0-9\u00c0-\u024f])"
        alternatives.append(pattern)
    return re.compile("|".join(alternatives))
