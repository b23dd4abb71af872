"""Sentences, and segments packed from them up to a target duration.

A paragraph is cut into sentences (English abbreviations, initials, decimals,
closing quotes and brackets; Chinese 。！？；…; mixed text). Sentences are packed
greedily into segments whose estimated duration stays within the target; a
sentence longer than the maximum is cut at clause punctuation, then between
words (spaces; Chinese at word boundaries found by jieba; Japanese where a
kana run gives way to kanji or katakana; next to Latin words and numbers), never
inside a word, a number, an IPA span or a pause marker.

Pause markers (``[pause 1.5s]``) are not spoken: the pipeline inserts their
silence when it finishes a chapter. A marker always ends a cut, and the cut
carries the pause (adjacent markers add up) in ``pause_s``; the text after it
starts the next cut. A paragraph that begins with markers gives a first cut
with no units: only a pause, for the segment before it.

Cuts cover the paragraph exactly: consecutive cuts share their edges, and each
segment's text is its speech span (``start..speech_end``) with the surrounding
whitespace stripped; what lies between ``speech_end`` and ``end`` is whitespace
and the cut's pause markers. So joining the cuts gives back the paragraph, and
joining the segment texts and the markers gives it back up to whitespace.

Durations add up: a cut lists the units (sentences, or the clause and word
pieces of an over-long sentence) it was packed from, each measured on its own,
and a segment's model text is its units' spoken forms joined. So a segment's
estimate is the sum of its units' estimates, each unit is normalized once, and
where a sentence ends never changes how the next one reads.
"""
from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, replace
from typing import Callable

from moss_model.codec.rates import DEFAULT_FRAME_RATE
from pipeline.text.inline import Control, count_pinyin_syllables, find_controls, split_with_controls
from pipeline.reading.script import (
    HAN_CLASS, KANA_CLASS, LANGUAGES, count_han, count_hangul, count_kana, is_cjk,
)

# Kinds of boundary after a segment, from the shortest pause to the longest.
# "clause" marks a cut inside an over-long sentence.
BOUNDARY_KINDS = ("clause", "sentence", "paragraph", "chapter")

_CLOSERS = "\"'”’»)\\]）」』】"
_OPENERS = "\"'“‘«¿¡(\\[（「『【"
_SENTENCE_END_RE = re.compile(rf"(?:[。！？；｡]+|[.!?…]+)[{_CLOSERS}]*")
_ENDS_WITH_SENTENCE_END_RE = re.compile(rf"(?:[。！？；｡]|[.!?…])[{_CLOSERS}]*\s*$")
_CJK_SENTENCE_END = frozenset("。！？；｡")
_CLAUSE_END_RE = re.compile(rf"(?:[,;:]+[{_CLOSERS}]*(?=\s)|[，、；：]+[{_CLOSERS}]*|[—–]+)")
_WORD_BEFORE_RE = re.compile(r"(?<![A-Za-z.])([A-Za-z][A-Za-z.]*)\.$")
_SPACES_RE = re.compile(r"\s+")
# A letter or digit of any script: text without one has nothing to say.
_SPEAKABLE_RE = re.compile(r"[^\W_]")
_SPEAKABLE_RUN_RE = re.compile(r"[^\W_]+")
_HIRAGANA_RE = re.compile("[\u3041-\u309f]")
_KANJI_OR_KATAKANA_RE = re.compile(f"[{HAN_CLASS}\u30a0-\u30ff\uff66-\uff9f]")
_KANA_RE = re.compile(f"[{KANA_CLASS}]")
# Latin words and numbers ("3.5", "1,000", "don't", "e-mail"): no cut falls inside one.
_ATOMIC_RE = re.compile(r"[A-Za-z0-9\u00c0-\u024f]+(?:[.,:'’-][A-Za-z0-9\u00c0-\u024f]+)*")
# A period after these does not end a sentence: titles come before a name, ...
_TITLE_ABBREVIATIONS = frozenset("mr mrs ms dr prof st capt col gen lt sgt rev hon gov mt ft vs e.g i.e cf approx".split())
# ... and these before a number ("No. 5", "Jan. 12"; but "he said no. Then" ends one).
_NUMBER_ABBREVIATIONS = frozenset("no nos p pp ch chap fig vol jan feb mar apr jun jul aug sep sept oct nov dec".split())


@dataclass(frozen=True)
class SpeakingRates:
    """Spoken characters per second, per language.

    What a character is depends on the script: letters and digits for the languages written
    in Latin letters (en, de, fr, es, and any other language at the English rate), Han
    characters for Chinese, kana and kanji for Japanese, Hangul syllables for Korean.
    """

    en: float = 11.5
    zh: float = 4.5
    ja: float = 7.0
    ko: float = 5.5
    de: float = 12.5
    fr: float = 13.5
    es: float = 13.0

    def __post_init__(self) -> None:
        bad = {code: getattr(self, code) for code in LANGUAGES if not getattr(self, code) > 0}
        if bad:
            raise ValueError(f"speaking rates must be positive, got {bad}")

    def letters(self, language: str) -> float:
        """The rate for letters and digits in text of `language` (English's for a language without one)."""
        return getattr(self, language) if language in ("en", "de", "fr", "es") else self.en


def estimate_seconds(model_text: str, rates: SpeakingRates, language: str = "en") -> float:
    """How long the model text takes to say: per-script character counts over the rates.

    Han characters go at the Japanese rate in Japanese text and the Chinese rate elsewhere; kana
    at the Japanese rate; Hangul at the Korean rate; letters and digits of every other script at
    the rate of `language` for letters. Speech only: a pause marker counts nothing (the pipeline
    inserts its silence, the model never sees it).
    """
    han = kana = hangul = letters = 0
    for piece, control in split_with_controls(model_text):
        if control is not None and control.kind == "marker":
            continue
        if control is not None and control.kind == "pinyin":
            han += count_pinyin_syllables(piece)
        else:  # plain text or IPA
            piece_han, piece_kana, piece_hangul = count_han(piece), count_kana(piece), count_hangul(piece)
            han += piece_han
            kana += piece_kana
            hangul += piece_hangul
            letters += sum(map(len, _SPEAKABLE_RUN_RE.findall(piece))) - piece_han - piece_kana - piece_hangul
    han_rate = rates.ja if language == "ja" else rates.zh
    return han / han_rate + kana / rates.ja + hangul / rates.ko + letters / rates.letters(language)


def seconds_to_frames(seconds: float, frame_rate: float = DEFAULT_FRAME_RATE) -> int:
    """Codec frames, at least one. Planning runs before any model is resolved, so the rate is the
    released codec's (moss_model.codec.rates, where the codec config's default comes from)."""
    return max(1, math.ceil(seconds * frame_rate - 1e-9))


def is_speakable(text: str) -> bool:
    """Whether the text holds anything to say (a letter, digit or Han character; a pause marker is not speech)."""
    return bool(_SPEAKABLE_RE.search(_without_markers(text)))


def _without_markers(text: str) -> str:
    markers = [c for c in find_controls(text) if c.kind == "marker"]
    if not markers:
        return text
    edges = [0] + [e for c in markers for e in (c.start, c.end)] + [len(text)]
    return " ".join(text[a:b] for a, b in zip(edges[::2], edges[1::2]))


@dataclass(frozen=True)
class Cut:
    start: int
    end: int
    boundary: str  # "clause" | "sentence" | "paragraph": the kind of boundary after this cut
    units: tuple[tuple[int, int], ...]  # the measured pieces it is made of, in order, covering start..speech_end
    seconds: float  # the sum of the units' measures (speech only)
    pause_s: float | None = None  # total of the pause markers that end it (between speech_end and end)

    @property
    def speech_end(self) -> int:
        """Where its speech ends; after that, up to `end`, only whitespace and its pause markers."""
        return self.units[-1][1] if self.units else self.start


class UnsplittableError(Exception):
    """A single word (or IPA span) is longer than the maximum segment duration."""

    def __init__(self, start: int, end: int, seconds: float) -> None:
        self.start, self.end, self.seconds = start, end, seconds
        super().__init__(f"characters {start}-{end} form one word of {seconds:.1f} s")


class _Protected:
    """Positions inside inline controls, where no cut may fall."""

    def __init__(self, controls: list[Control]) -> None:
        self.starts = [c.start for c in controls]
        self.ends = [c.end for c in controls]

    def inside(self, pos: int) -> bool:
        """Whether a cut at `pos` would fall inside a control."""
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
        if m.group(0)[0] in _CJK_SENTENCE_END or _chinese_ellipsis(text, m.start(), m.group(0), end):
            ends.append(end)
        elif text[end].isspace() and _ends_sentence(text, m.start(), m.group(0), end):
            ends.append(end)
    ends.append(len(text))
    return ends


def _chinese_ellipsis(text: str, start: int, mark: str, end: int) -> bool:
    """An ellipsis in Chinese text ends a sentence without a following space: 嗯……“走吧。”"""
    return mark[0] == "…" and start > 0 and is_cjk(text[start - 1]) and not text[end].isspace()


def _ends_sentence(text: str, start: int, mark: str, end: int) -> bool:
    after = text[end:end + 40].lstrip()
    if not after:
        return True
    nxt = after[0]
    if nxt.islower():
        return False  # "e.g. apples", "“Hey!” he said", "wait... then"
    # Scripts without case (Han, kana, Hangul, ...) start a sentence with any letter.
    if not (nxt.isupper() or nxt.isalpha() or nxt.isdigit() or nxt in _OPENERS or nxt in "[—–-/"):
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

    `measure` gives the estimated seconds of a unit of text (called once per
    unit). Sentences are packed while their total stays within `target_seconds`;
    a single sentence may run up to `max_seconds`; a longer one is cut at
    clauses, then between words. A pause marker ends a cut (its seconds go to
    the cut's `pause_s`, not to its measure). Raises UnsplittableError for a
    single word longer than `max_seconds`.
    """
    if not text:
        return []
    controls = find_controls(text)
    runs = _marker_runs(text, controls)
    if not runs:
        return _close(_segment_stretch(text, _Protected(controls), measure, target_seconds, max_seconds), len(text))
    cuts: list[Cut] = []
    position = 0
    for start, end, pause in runs + [(len(text), len(text), None)]:
        stretch = text[position:start]
        if stretch.strip():
            try:
                found = _segment_stretch(stretch, _Protected(find_controls(stretch)), measure, target_seconds,
                                         max_seconds)
            except UnsplittableError as e:
                raise UnsplittableError(e.start + position, e.end + position, e.seconds) from None
            found = [_shifted(c, position) for c in found]
            boundary = "sentence" if _ENDS_WITH_SENTENCE_END_RE.search(stretch) else "clause"
            found[-1] = replace(found[-1], boundary=boundary, pause_s=pause)
            cuts.extend(found)
        elif pause is not None:  # markers before any speech (a run holds all markers with only space between)
            cuts.append(Cut(position, start, "clause", (), 0.0, pause))
        position = end
    # The last cut is the paragraph's last speech (markers at the end are its pause), or its only pause.
    cuts[-1] = replace(cuts[-1], boundary="paragraph")
    return _close(cuts, len(text))


def _segment_stretch(
    text: str,
    protected: _Protected,
    measure: Callable[[str], float],
    target_seconds: float,
    max_seconds: float,
) -> list[Cut]:
    """Cuts of text without pause markers (the last one's boundary is "paragraph")."""
    ends = sentence_ends(text, protected)
    sentences = [(start, end) for start, end in zip([0] + ends, ends)]

    def unsplittable(start: int, end: int) -> list[Cut]:
        word = text[start:end]
        raise UnsplittableError(start + len(word) - len(word.lstrip()), start + len(word.rstrip()), measure(word))

    def words(start: int, end: int) -> list[Cut]:
        spans = _pieces(text, start, end, _word_cuts(text, start, end, protected))
        return _greedy(text, spans, "clause", measure, target_seconds, max_seconds, unsplittable)

    def clauses(start: int, end: int) -> list[Cut]:
        spans = _pieces(text, start, end, _clause_cuts(text, start, end, protected))
        return _greedy(text, spans, "clause", measure, target_seconds, max_seconds, words)

    groups = _greedy(text, sentences, "sentence", measure, target_seconds, max_seconds, clauses)
    groups[-1] = replace(groups[-1], boundary="paragraph")
    return groups


def _close(cuts: list[Cut], length: int) -> list[Cut]:
    """Each cut runs to where the next begins (the last to the end), so nothing between them is lost."""
    return [replace(c, end=nxt.start) for c, nxt in zip(cuts, cuts[1:])] + [replace(cuts[-1], end=length)]


def _shifted(cut: Cut, offset: int) -> Cut:
    return replace(cut, start=cut.start + offset, end=cut.end + offset,
                   units=tuple((a + offset, b + offset) for a, b in cut.units))


def _marker_runs(text: str, controls: list[Control]) -> list[tuple[int, int, float]]:
    """(start, end, seconds) of each run of pause markers with only whitespace between them."""
    runs: list[tuple[int, int, float]] = []
    for c in controls:
        if c.kind != "marker":
            continue
        if runs and not text[runs[-1][1]:c.start].strip():
            start, _, seconds = runs[-1]
            runs[-1] = (start, c.end, seconds + c.pause_seconds)
        else:
            runs.append((c.start, c.end, c.pause_seconds))
    return runs


def _greedy(
    text: str,
    spans: list[tuple[int, int]],
    boundary: str,
    measure: Callable[[str], float],
    target_seconds: float,
    max_seconds: float,
    split: Callable[[int, int], list[Cut]],
) -> list[Cut]:
    """Consecutive spans grouped greedily while a group's total stays within the target.

    A span that alone is longer than `max_seconds` is replaced by `split(start, end)`,
    groups of its smaller parts. No group measures more than `max_seconds`.
    """
    groups: list[Cut] = []
    group: Cut | None = None
    for start, end in spans:
        seconds = measure(text[start:end])
        if seconds > max_seconds:
            if group is not None:
                groups.append(group)
            parts = split(start, end)
            groups.extend(parts[:-1])
            group = Cut(parts[-1].start, parts[-1].end, boundary, parts[-1].units, parts[-1].seconds)
        elif group is not None and group.seconds + seconds <= target_seconds:
            group = Cut(group.start, end, boundary, group.units + ((start, end),), group.seconds + seconds)
        else:
            if group is not None:
                groups.append(group)
            group = Cut(start, end, boundary, ((start, end),), seconds)
    if group is not None:
        groups.append(group)
    return groups


def _pieces(text: str, start: int, end: int, cuts: list[int]) -> list[tuple[int, int]]:
    """The span start..end cut at `cuts` (a whitespace-only piece joins the one before it)."""
    # A cut before the span's last non-space character leaves something to say after it; testing
    # that once, not by stripping the rest of the span at every cut, keeps this linear.
    speech_end = start + len(text[start:end].rstrip())
    edges = [start] + [c for c in cuts if start < c < speech_end] + [end]
    return list(zip(edges, edges[1:]))


def _clause_cuts(text: str, start: int, end: int, protected: _Protected) -> list[int]:
    return [m.end() for m in _CLAUSE_END_RE.finditer(text, start, end)
            if not protected.inside(m.start()) and not protected.inside(m.end())]


def _word_cuts(text: str, start: int, end: int, protected: _Protected) -> list[int]:
    """Places between words: after a run of spaces, between words of unspaced Chinese or Japanese,
    and where such text meets a Latin word or number; never inside a Latin word or number."""
    cuts = [m.end() for m in _SPACES_RE.finditer(text, start, end)]
    cuts += _cjk_word_cuts(text, start, end)
    words = [(m.start(), m.end()) for m in _ATOMIC_RE.finditer(text, start, end)]
    kept: list[int] = []
    i = 0
    for c in sorted(set(cuts)):  # both sorted: one walk over the words
        while i < len(words) and words[i][1] <= c:
            i += 1
        if not (i < len(words) and words[i][0] < c) and not protected.inside(c):
            kept.append(c)
    return kept


_CJK_RUN_RE = re.compile(f"[{HAN_CLASS}{KANA_CLASS}]+")


def _cjk_word_cuts(text: str, start: int, end: int) -> list[int]:
    cuts: list[int] = []
    for m in _CJK_RUN_RE.finditer(text, start, end):
        a, b = m.start(), m.end()
        if a > start and text[a - 1].isalnum():
            cuts.append(a)  # a Latin word or number, then CJK
        if b < end and text[b].isalnum():
            cuts.append(b)
        run = m.group(0)
        if _KANA_RE.search(run):
            # Japanese: after a run of hiragana (particles, endings) where kanji or katakana begin.
            cuts += [a + i for i in range(1, len(run))
                     if _HIRAGANA_RE.match(run[i - 1]) and _KANJI_OR_KATAKANA_RE.match(run[i])]
        else:
            cuts += _chinese_word_edges(run, a)
    return cuts


def _chinese_word_edges(run: str, offset: int) -> list[int]:
    """Offsets between the words of a run of Han characters (jieba's segmentation)."""
    position, edges = offset, []
    for word in _jieba().cut(run, HMM=True):
        position += len(word)
        edges.append(position)
    return edges[:-1]


_JIEBA = None


def _jieba():
    """jieba, loaded on first use (its dictionary takes most of a second)."""
    global _JIEBA
    if _JIEBA is None:
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        jieba.initialize()
        _JIEBA = jieba
    return _JIEBA
