"""Checks that normalization neither loses nor invents words.

`dropped_words` lists the words of a segment's text that its model text does not say: every
word must survive normalization except the ones rewritten on purpose (abbreviations, units,
Roman numerals, URL schemes, lexicon terms, which become other words). `invented_words` is the
other direction: the words the model text says that neither the text has nor a rewrite declares
(`pipeline.text.normalize.rewrite_products`: spoken numbers, dates, money, units, abbreviations, URL
and symbol words) nor a lexicon pronunciation used brings. Han, kana and Hangul are checked
character by character.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

from pipeline.reading.script import HAN_CLASS, HANGUL_CLASS, KANA_CLASS
from pipeline.text import chinese as zh
from pipeline.text import english as en
from pipeline.text import intl
from pipeline.text.inline import PINYIN_SYLLABLE
from pipeline.text.normalize import rewrite_products

_WORD_RE = re.compile(r"[^\W\d_]+")
_CJK_CHAR_RE = re.compile(f"[{HAN_CLASS}{KANA_CLASS}{HANGUL_CLASS}]")
_ROMAN_RE = re.compile(r"[IVXLCDM]+")
_DIGIT = re.compile(r"\d")
_PINYIN_SYLLABLE_RE = re.compile(PINYIN_SYLLABLE)
# A number is read in the language of the text around it (Chinese digits inside English text,
# English ones beside Latin words in Japanese text): these languages' readings are always allowed.
_NEIGHBOUR_LANGUAGES = ("en", "zh", "ja", "ko")


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


def _tokens(text: str) -> tuple[list[str], list[str]]:
    """Casefolded words (letters of any script but Han, kana and Hangul), and those characters."""
    chars = _CJK_CHAR_RE.findall(text)
    if chars:
        text = _CJK_CHAR_RE.sub(" ", text)
    return [w.casefold() for w in _WORD_RE.findall(text)], chars


@lru_cache(maxsize=None)
def _products(language: str) -> tuple[frozenset[str], frozenset[str], frozenset[str], int]:
    """What rewriting text of `language` may say: words, CJK characters, and the number words that
    compounds are made of ("drei" "hundert" "fünfundzwanzig"), with the longest one's length."""
    words, chars = _tokens(" ".join(rewrite_products(language)))
    parts = {w for w in _tokens(" ".join(intl.number_words(language)))[0] if len(w) > 1}
    return frozenset(words), frozenset(chars), frozenset(parts), max(map(len, parts), default=0)


def _compound(word: str, parts: frozenset[str], longest: int) -> bool:
    """Whether `word` is a run of number words ("zweitausenddreihundert")."""
    ends = [True] + [False] * len(word)  # ends[i]: word[:i] is a run of them (each two letters or more)
    for i in range(1, len(word) + 1):
        ends[i] = any(ends[j] and word[j:i] in parts for j in range(max(0, i - longest), i - 1))
    return ends[-1]


def invented_words(
    text: str,
    model_text: str,
    languages: Iterable[str] = (),
    pronunciations: Iterable[str] = (),
    pinyin: bool = False,
) -> list[str]:
    """Words (and CJK characters) of `model_text` that do not trace back to `text`, in order, each once.

    A word traces back when the text has it (case aside) or when a rewrite of one of `languages`
    (and of English, Chinese, Japanese and Korean, in which numbers beside such text are read) may
    say it: a spoken number or a compound of number words, a month, currency, unit, abbreviation,
    URL or symbol word. `pronunciations` are those of the lexicon entries used: their words trace
    back too, and with `pinyin` (polyphones rendered in context) so does any Pinyin syllable.
    """
    if text == model_text:
        return []
    said_words, said_chars = _tokens(model_text)
    text_words, text_chars = _tokens(text)
    known_words, known_chars = set(text_words), set(text_chars)
    unknown = [w for w in said_words if w not in known_words] + [c for c in said_chars if c not in known_chars]
    if not unknown:
        return []
    for pronunciation in pronunciations:
        words, chars = _tokens(pronunciation)
        known_words.update(words)
        known_chars.update(chars)
    products = [_products(language) for language in dict.fromkeys([*languages, *_NEIGHBOUR_LANGUAGES])]
    invented: dict[str, None] = {}
    for token in unknown:
        if token in known_words or token in known_chars or token in invented:
            continue
        if any(token in words or token in chars for words, chars, _, _ in products):
            continue
        if any(longest and _compound(token, parts, longest) for _, _, parts, longest in products):
            continue
        if pinyin and _PINYIN_SYLLABLE_RE.fullmatch(token + "1"):
            continue
        invented[token] = None
    return list(invented)
