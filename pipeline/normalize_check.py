"""Checks that normalization neither loses nor invents words.

`dropped_words` lists the words of a segment's text that its model text does not say: every
word must survive normalization except the ones rewritten on purpose (abbreviations, units,
Roman numerals, URL schemes, lexicon terms, which become other words). Han, kana and Hangul
are checked character by character.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

from pipeline import normalize_en as en
from pipeline import normalize_intl as intl
from pipeline import normalize_zh as zh
from pipeline.normalize_script import HAN_CLASS, HANGUL_CLASS, KANA_CLASS

_WORD_RE = re.compile(r"[^\W\d_]+")
_CJK_CHAR_RE = re.compile(f"[{HAN_CLASS}{KANA_CLASS}{HANGUL_CLASS}]")
_ROMAN_RE = re.compile(r"[IVXLCDM]+")
_DIGIT = re.compile(r"\d")


@lru_cache(maxsize=1)
def _rewritten() -> frozenset[str]:
    """Words that normalization replaces on purpose, casefolded."""
    words: set[str] = {"http", "https", "us", "st", "nd", "rd", "th", "d", "no", "nos"}
    keys: Iterable[str] = list(en.ABBREVIATIONS) + list(en.UNITS) + list(zh.UNITS)
    keys = list(keys) + [u for table in intl.UNITS.values() for u in table]
    for key in keys:
        words.update(w.casefold() for w in _WORD_RE.findall(key))
    return frozenset(words)


def _words(text: str) -> list[str]:
    """Words of `text` that are not glued to a digit ("1st", "5km", "mp3" are number forms)."""
    found = []
    for m in _WORD_RE.finditer(text):
        before = text[m.start() - 1:m.start()]
        after = text[m.end():m.end() + 1]
        if not (_DIGIT.match(before) or _DIGIT.match(after)):
            found.append(m.group(0))
    return found


def dropped_words(text: str, model_text: str, protected_terms: Iterable[str] = ()) -> list[str]:
    """Words (and CJK characters) of `text` missing from `model_text`, in order, each once.

    `protected_terms` are lexicon terms replaced by their pronunciations: their words are exempt.
    """
    if text == model_text:
        return []
    exempt = set(_rewritten())
    for term in protected_terms:
        exempt.update(w.casefold() for w in _WORD_RE.findall(_CJK_CHAR_RE.sub(" ", term)))
        exempt.update(_CJK_CHAR_RE.findall(term))
    missing: dict[str, None] = {}
    if _CJK_CHAR_RE.search(text):
        said_chars = set(_CJK_CHAR_RE.findall(model_text))
        missing.update((ch, None) for ch in _CJK_CHAR_RE.findall(text) if ch not in said_chars and ch not in exempt)
        text, model_text = _CJK_CHAR_RE.sub(" ", text), _CJK_CHAR_RE.sub(" ", model_text)
    said = {w.casefold() for w in _WORD_RE.findall(model_text)}
    for word in _words(text):
        folded = word.casefold()
        if folded not in said and folded not in exempt and not _ROMAN_RE.fullmatch(word):
            missing[word] = None
    return list(missing)
