"""Which script a character belongs to, and which language a piece of text is in.

The script decides where it can: Han is Chinese, kana (with or without Han) Japanese, Hangul
Korean. Text in Latin letters goes to a language detector (py3langid), which only overrules
the default (the book's language) when it is confident and the text is long enough to tell.
Other scripts (Cyrillic, Greek, Arabic, ...) are named by the detector too, so that the plan
can warn about a language it does not handle.
"""
from __future__ import annotations

import re
from functools import lru_cache

# CJK ideographs: the unified block, extension A, compatibility ideographs, the
# supplementary ideographic plane, and the ideographic zero.
HAN_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff\u3007"
# Hiragana, katakana (with the prolonged sound mark), phonetic extensions, halfwidth katakana.
KANA_CLASS = "\u3041-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"
HANGUL_CLASS = "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
# Punctuation written in Chinese and Japanese text (CJK symbols block and fullwidth forms).
CJK_PUNCT_CLASS = "\u3001-\u3006\u3008-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"

HAN_RE = re.compile(f"[{HAN_CLASS}]")
_HAN_RUN_RE = re.compile(f"[{HAN_CLASS}]+")
_KANA_RUN_RE = re.compile(f"[{KANA_CLASS}]+")
_HANGUL_RUN_RE = re.compile(f"[{HANGUL_CLASS}]+")
_HAN_OR_CJK_PUNCT_RE = re.compile(f"[{HAN_CLASS}{KANA_CLASS}{CJK_PUNCT_CLASS}]")
_LATIN_RUN_RE = re.compile(r"[A-Za-z\u00c0-\u024f]+")
_NON_LATIN_HINT_RE = re.compile(r"[^\x00-\u024f]")
# Letters of any script, less the ones counted above: what the detector names.
_OTHER_LETTER_RUN_RE = re.compile(
    rf"[^\W\d_A-Za-z\u00c0-\u024f{HAN_CLASS}{KANA_CLASS}{HANGUL_CLASS}]+")

# Languages the pipeline handles: speaking rates, sentences, spoken numbers.
LANGUAGES = ("en", "zh", "ja", "ko", "de", "fr", "es")
CJK_LANGUAGES = ("zh", "ja", "ko")
LANGUAGE_NAMES = {
    "en": "English", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "de": "German", "fr": "French",
    "es": "Spanish", "it": "Italian", "pt": "Portuguese", "nl": "Dutch", "ru": "Russian", "uk": "Ukrainian",
    "pl": "Polish", "cs": "Czech", "sv": "Swedish", "da": "Danish", "no": "Norwegian", "fi": "Finnish",
    "hu": "Hungarian", "ro": "Romanian", "tr": "Turkish", "el": "Greek", "ar": "Arabic", "he": "Hebrew",
    "fa": "Persian", "hi": "Hindi", "th": "Thai", "vi": "Vietnamese", "id": "Indonesian", "ms": "Malay",
    "tl": "Tagalog", "sw": "Swahili", "mk": "Macedonian", "la": "Latin",
}
# Latin-script languages the detector chooses among (the handled ones and the commonest others).
_LATIN_CANDIDATES = ("en", "de", "fr", "es", "it", "pt", "nl", "sv", "da", "no", "fi", "pl", "cs", "ro", "hu",
                     "tr", "vi", "id", "la")
LATIN_SCRIPT_LANGUAGES = frozenset(_LATIN_CANDIDATES)
_MIN_LETTERS_TO_DETECT = 40  # fewer Latin letters than this: too short to tell, the default holds
_MIN_CONFIDENCE = 0.95
_DETECT_CHARACTERS = 200


def is_han(ch: str) -> bool:
    return bool(HAN_RE.match(ch))


def is_cjk(ch: str) -> bool:
    """A Han character, kana, or Chinese/Japanese punctuation."""
    return bool(_HAN_OR_CJK_PUNCT_RE.match(ch))


def count_han(text: str) -> int:
    # Counting runs, not characters, keeps the match lists short (this is on the hot path).
    return sum(map(len, _HAN_RUN_RE.findall(text)))


def count_kana(text: str) -> int:
    return sum(map(len, _KANA_RUN_RE.findall(text))) if _NON_LATIN_HINT_RE.search(text) else 0


def count_hangul(text: str) -> int:
    return sum(map(len, _HANGUL_RUN_RE.findall(text))) if _NON_LATIN_HINT_RE.search(text) else 0


def count_latin(text: str) -> int:
    return sum(map(len, _LATIN_RUN_RE.findall(text)))


def count_other_letters(text: str) -> int:
    """Letters outside Latin, Han, kana and Hangul (Cyrillic, Greek, Arabic, ...)."""
    return sum(map(len, _OTHER_LETTER_RUN_RE.findall(text))) if _NON_LATIN_HINT_RE.search(text) else 0


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


def detect_language(text: str, *, pinyin_syllables: int = 0, default: str = "en") -> str:
    """The language of `text`: a code from LANGUAGES, or another code the plan warns about.

    Mixed text goes to the script that takes longest to say (a Han character or Pinyin
    syllable about as long as three Latin letters, a kana or Hangul syllable two).
    """
    latin = count_latin(text)
    if not pinyin_syllables and not _NON_LATIN_HINT_RE.search(text):
        return _latin_language(text, latin, default) if latin else default
    han = count_han(text) + pinyin_syllables
    kana, hangul, other = count_kana(text), count_hangul(text), count_other_letters(text)
    weights = {"cjk": 3 * han + 2 * kana, "ko": 2 * hangul, "other": other, "latin": latin}
    winner = max(weights, key=lambda name: weights[name])
    if weights[winner] == 0:
        return default
    if winner == "cjk":
        return "ja" if kana else "zh"
    if winner == "ko":
        return "ko"
    if winner == "other":
        return _other_language(text)
    return _latin_language(text, latin, default)


def _latin_language(text: str, letters: int, default: str) -> str:
    fallback = default if default in LATIN_SCRIPT_LANGUAGES else "en"
    if letters < _MIN_LETTERS_TO_DETECT:
        return fallback
    # A few hundred characters tell the language as well as a page (and cost far less).
    code, confidence = _latin_identifier().classify(text[:_DETECT_CHARACTERS])
    return code if code == fallback or confidence >= _MIN_CONFIDENCE else fallback


def _other_language(text: str) -> str:
    code, _ = _any_identifier().classify(text[:_DETECT_CHARACTERS])
    return code


@lru_cache(maxsize=1)
def _any_identifier():
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)


@lru_cache(maxsize=1)
def _latin_identifier():
    from py3langid.langid import LanguageIdentifier

    full = _any_identifier()  # the same model, restricted: loading it takes most of a second
    identifier = LanguageIdentifier(full.nb_ptc, full.nb_pc, full.nb_classes, full.tk_nextmove, full.tk_output,
                                    norm_probs=True, tk_row=full.tk_row)
    identifier.set_languages(list(_LATIN_CANDIDATES))
    return identifier
