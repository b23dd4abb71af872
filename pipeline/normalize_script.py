"""Which script a character belongs to, and which language a piece of text is in."""
from __future__ import annotations

import re

# CJK ideographs: the unified block, extension A, compatibility ideographs, the
# supplementary ideographic plane, and the ideographic zero.
HAN_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff\u3007"
# Punctuation written in Chinese text (CJK symbols block and fullwidth forms).
CJK_PUNCT_CLASS = "\u3001-\u3006\u3008-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"

HAN_RE = re.compile(f"[{HAN_CLASS}]")
_HAN_RUN_RE = re.compile(f"[{HAN_CLASS}]+")
_HAN_OR_CJK_PUNCT_RE = re.compile(f"[{HAN_CLASS}{CJK_PUNCT_CLASS}]")
_LATIN_RUN_RE = re.compile(r"[A-Za-z\u00c0-\u024f]+")

LANGUAGES = ("en", "zh")


def is_han(ch: str) -> bool:
    return bool(HAN_RE.match(ch))


def is_cjk(ch: str) -> bool:
    """A Han character or Chinese punctuation."""
    return bool(_HAN_OR_CJK_PUNCT_RE.match(ch))


def count_han(text: str) -> int:
    # Counting runs, not characters, keeps the match lists short (this is on the hot path).
    return sum(map(len, _HAN_RUN_RE.findall(text)))


def count_latin(text: str) -> int:
    return sum(map(len, _LATIN_RUN_RE.findall(text)))


def detect_language(text: str, *, pinyin_syllables: int = 0, default: str = "en") -> str:
    """'zh' or 'en' from the script mix; mixed text goes to the language that takes longer to say.

    One Han character (or tone-numbered Pinyin syllable) takes about as long to say as
    three Latin letters, hence the weight.
    """
    if not pinyin_syllables and not HAN_RE.search(text):
        return "en" if _LATIN_RUN_RE.search(text) else default
    han = count_han(text) + pinyin_syllables
    return "zh" if 3 * han >= count_latin(text) else "en"
