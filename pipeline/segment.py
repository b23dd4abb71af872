"""Sentences, and segments packed from them up to a target duration.

A paragraph is cut into sentences (English abbreviations, initials, decimals,
closing quotes and brackets; Chinese 。！？；…; mixed text). Sentences are packed
greedily into segments whose estimated duration stays within the target; a
sentence longer than the maximum is cut at clause punctuation, then between
words (spaces, or between Han characters), never inside a word, an IPA span or
a pause marker.

Cuts cover the paragraph exactly: consecutive cuts share their edges, and each
segment's text is its cut with the surrounding whitespace stripped, so joining
the cuts gives back the paragraph.
"""
from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from typing import Callable

from pipeline.normalize_inline import Control, find_controls, split_controls, count_pinyin_syllables
from pipeline.normalize_script import HAN_CLASS, count_han, is_han

FRAMES_PER_SECOND = 12.5

# Kinds of boundary after a segment, from the shortest pause to the longest.
# "clause" marks a cut inside an over-long sentence.
BOUNDARY_KINDS = ("clause", "sentence", "paragraph", "chapter")

_CLOSERS = "\"'”’»)\\]）」』】"
_OPENERS = "\"'“‘«(\\[（「『【"
_SENTENCE_END_RE = re.compile(rf"(?:[。！？；]+|[.!?…]+)[{_CLOSERS}]*")
_CJK_SENTENCE_END = frozenset("。！？；")
_CLAUSE_END_RE = re.compile(rf"(?:[,;:]+[{_CLOSERS}]*(?=\s)|[，、；：]+[{_CLOSERS}]*|[—–]+)")
_WORD_BEFORE_RE = re.compile(r"(?<![A-Za-z.])([A-Za-z][A-Za-z.]*)\.$")
_SPACES_RE = re.compile(r"\s+")
_SPEAKABLE_RE = re.compile(rf"[A-Za-z0-9\u00c0-\u024f\u0250-\u02af{HAN_CLASS}]")
# A period after these does not end a sentence: titles come before a name, ...
_TITLE_ABBREVIATIONS = frozenset("mr mrs ms dr prof st capt col gen lt sgt rev hon gov mt ft vs e.g i.e cf approx".split())
# ... and these before a number ("No. 5", "Jan. 12"; but "he said no. Then" ends one).
_NUMBER_ABBREVIATIONS = frozenset("no nos p pp ch chap fig vol jan feb mar apr jun jul aug sep sept oct nov dec".split())


@dataclass(frozen=True)
class SpeakingRates:
    """Spoken characters per second: Latin letters and digits for English, Han characters for Chinese."""

    en: float = 11.5
    zh: float = 4.5

    def __post_init__(self) -> None:
        if self.en <= 0 or self.zh <= 0:
            raise ValueError(f"speaking rates must be positive, got en={self.en}, zh={self.zh}")


def estimate_seconds(model_text: str, rates: SpeakingRates) -> float:
    """How long the model text takes to say: per-script character counts over the rates, plus pauses."""
    han = 0
    latin = 0
    pause = 0.0
    for piece, kind in split_controls(model_text):
        if kind == "marker":
            pause += float(re.search(r"\d+(?:\.\d+)?", piece).group(0))
        elif kind == "pinyin":
            han += count_pinyin_syllables(piece)
        else:
            piece_han = count_han(piece)
            han += piece_han
            latin += len(_SPEAKABLE_RE.findall(piece)) - piece_han
    return han / rates.zh + latin / rates.en + pause


def seconds_to_frames(seconds: float) -> int:
    """Codec frames (12.5 per second), at least one."""
    return max(1, math.ceil(seconds * FRAMES_PER_SECOND - 1e-9))


def is_speakable(text: str) -> bool:
    """Whether the text holds anything to say (a letter, digit, Han character or pause marker)."""
    return bool(_SPEAKABLE_RE.search(text)) or any(c.kind == "marker" for c in find_controls(text))


@dataclass(frozen=True)
class Cut:
    start: int
    end: int
    boundary: str  # "clause" | "sentence" | "paragraph": the kind of boundary after this cut


class UnsplittableError(Exception):
    """A single word (or IPA span, or marker) is longer than the maximum segment duration."""

    def __init__(self, start: int, end: int, seconds: float) -> None:
        self.start, self.end, self.seconds = start, end, seconds
        super().__init__(f"characters {start}-{end} form one word of {seconds:.1f} s")


class _Protected:
    """Positions inside inline controls, where no cut may fall."""

    def __init__(self, controls: list[Control]) -> None:
        self.starts = [c.start for c in controls]
        self.ends = [c.end for c in controls]

    def inside(self, pos: int) -> bool:
        i = bisect.bisect_right(self.starts, pos - 1) - 1  # last control starting before pos
        return i >= 0 and pos < self.ends[i]


def sentence_ends(text: str, protected: _Protected | None = None) -> list[int]:
    """Offsets just after each sentence of `text` (the last one is len(text))."""
    protected = protected or _Protected(find_controls(text))
    ends: list[int] = []
    for m in _SENTENCE_END_RE.finditer(text):
        end = m.end()
        if end >= len(text) or protected.inside(m.start()) or protected.inside(end):
            continue
        if m.group(0)[0] in _CJK_SENTENCE_END:
            ends.append(end)
        elif text[end].isspace() and _ends_sentence(text, m.start(), m.group(0), end):
            ends.append(end)
    ends.append(len(text))
    return ends


def _ends_sentence(text: str, start: int, mark: str, end: int) -> bool:
    after = text[end:end + 40].lstrip()
    if not after:
        return True
    nxt = after[0]
    if nxt.islower():
        return False  # "e.g. apples", "“Hey!” he said", "wait... then"
    if not (nxt.isupper() or nxt.isdigit() or nxt in _OPENERS or is_han(nxt) or nxt in "[—–-/"):
        return False
    if mark[0] == "." and mark.rstrip(_CLOSERS) == ".":
        word = _WORD_BEFORE_RE.search(text, max(0, start - 20), start + 1)
        if word:
            token = word.group(1).lower()
            if token in _TITLE_ABBREVIATIONS or token in _NUMBER_ABBREVIATIONS and nxt.isdigit():
                return False  # "Dr. Marsh", "No. 5"
            if len(token) == 1 and word.group(1).isupper():
                return False  # initials: "J. R. Tolkien"
    return True


def segment_paragraph(
    text: str,
    measure: Callable[[str], float],
    target_seconds: float,
    max_seconds: float,
) -> list[Cut]:
    """Cuts of one clean paragraph into segments of at most `max_seconds` each.

    `measure` gives the estimated seconds of a piece of text. Sentences are packed
    while the total stays within `target_seconds`; a single sentence may run up to
    `max_seconds`; a longer one is cut at clauses, then between words. Raises
    UnsplittableError for a single word longer than `max_seconds`.
    """
    if not text:
        return []
    protected = _Protected(find_controls(text))
    units: list[tuple[int, int, float, str]] = []  # (start, end, seconds, boundary after)
    start = 0
    for end in sentence_ends(text, protected):
        seconds = measure(text[start:end])
        if seconds <= max_seconds:
            units.append((start, end, seconds, "sentence"))
        else:
            units.extend(_split_long(text, start, end, measure, target_seconds, max_seconds, protected))
        start = end
    groups = _pack(units, target_seconds)
    cuts = [Cut(start, end, boundary) for start, end, _, boundary in groups]
    cuts[-1] = Cut(cuts[-1].start, len(text), "paragraph")
    return cuts


_Unit = tuple[int, int, float, str]  # (start, end, seconds, boundary after)


def _pack(units: list[_Unit], target_seconds: float) -> list[_Unit]:
    """Consecutive units grouped greedily while their total stays within the target.

    A group ends where the next group starts, so groups cover the units' span
    without gaps. A unit longer than the target makes a group of its own.
    """
    groups: list[_Unit] = []
    group_start, group_seconds, previous = -1, 0.0, ""
    for start, end, seconds, boundary in units:
        if group_start >= 0 and group_seconds + seconds > target_seconds:
            groups.append((group_start, start, group_seconds, previous))
            group_start, group_seconds = -1, 0.0
        if group_start < 0:
            group_start = start
        group_seconds += seconds
        previous = boundary
    if group_start >= 0:
        groups.append((group_start, units[-1][1], group_seconds, previous))
    return groups


def _split_long(text: str, start: int, end: int, measure: Callable[[str], float], target_seconds: float,
                max_seconds: float, protected: _Protected) -> list[_Unit]:
    """An over-long sentence as clause-sized units: clauses first, then words."""
    units = []
    for piece_start, piece_end in _pieces(text, start, end, _clause_cuts(text, start, end, protected)):
        seconds = measure(text[piece_start:piece_end])
        if seconds <= max_seconds:
            units.append((piece_start, piece_end, seconds, "clause"))
            continue
        words = []
        for word_start, word_end in _pieces(text, piece_start, piece_end, _word_cuts(text, piece_start, piece_end, protected)):
            word_seconds = measure(text[word_start:word_end])
            if word_seconds > max_seconds:
                raise UnsplittableError(word_start, word_end, word_seconds)
            words.append((word_start, word_end, word_seconds, "clause"))
        units.extend(_pack(words, target_seconds))
    if units:
        last = units[-1]
        units[-1] = (last[0], last[1], last[2], "sentence")
    return units


def _pieces(text: str, start: int, end: int, cuts: list[int]) -> list[tuple[int, int]]:
    edges = [start] + [c for c in cuts if start < c < end] + [end]
    return [(a, b) for a, b in zip(edges, edges[1:]) if text[a:b].strip()] or [(start, end)]


def _clause_cuts(text: str, start: int, end: int, protected: _Protected) -> list[int]:
    return [m.end() for m in _CLAUSE_END_RE.finditer(text, start, end)
            if not protected.inside(m.start()) and not protected.inside(m.end())]


def _word_cuts(text: str, start: int, end: int, protected: _Protected) -> list[int]:
    """Places between words: after a run of spaces, or next to a Han character (not before punctuation)."""
    cuts = [m.end() for m in _SPACES_RE.finditer(text, start, end)]
    for i in range(start + 1, end):
        before, after = text[i - 1], text[i]
        if (is_han(before) and (is_han(after) or after.isalnum())) or (before.isalnum() and is_han(after)):
            cuts.append(i)
    return sorted(c for c in set(cuts) if not protected.inside(c))
