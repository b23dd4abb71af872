"""The text clean-up the released checkpoints were trained behind, applied to every prompt's text.

The behaviour is upstream MOSS-TTS's `normalize_tts_text` (its robustness normalizer), written
anew here and held to it by a golden table recorded from upstream's own function
(tests/moss_model/data/normalize_golden.jsonl). It is no reading normalizer: numbers, dates
and units are the pipeline's job, before this. What it does, in order:

1. line endings unified, the ideographic space made a plain one, control and format
   characters (zero-width ones included) removed;
2. Markdown: `[words](http...)` becomes "words http...", and each non-empty line loses one
   heading, quote, bullet and number prefix; the lines are joined with "。";
3. URLs, e-mail addresses, @mentions, r/ and u/ names, #hashtags, dot-files and file-like
   tokens (app.js.map, v2.3.1) are set aside so nothing below touches them;
4. spaces: runs become one space; none between CJK characters (Han and kana) or between CJK
   and digits; one between CJK and a Latin token; none before punctuation, none after
   Chinese punctuation;
5. structure: 【】〖〗『』「」 at the start of a sentence become the sentence they hold,
   a stand-alone 《title》 loses its marks, arrows become "，", dash runs become "。";
6. punctuation runs: "..."/"……" become "。", repeated marks collapse to one fullwidth mark,
   mixed ?! runs to "？！";
7. spaces once more, the set-aside tokens put back, the ends stripped.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable

# Scripts written without spaces between words: Han (BMP blocks) and kana.
_CJK = "[\u3400-\u4dbf\u4e00-\u9fff\u3040-\u30ff]"
_TOKEN_CHARS = "A-Za-z0-9._/+:-"
_SLOT = "___PROT{}___"  # the shape of a set-aside token's stand-in; rules below match it too
_SLOT_RE = r"___PROT\d+___"
# A Latin-ish token (at least one letter) or a stand-in: what gets a space next to CJK text.
_LATIN_TOKEN = rf"(?:{_SLOT_RE}|(?=[{_TOKEN_CHARS}]*[A-Za-z])[A-Za-z0-9][{_TOKEN_CHARS}]*)"

Rule = tuple["re.Pattern[str]", "str | Callable[[re.Match[str]], str]"]


def _rules(*pairs: tuple[str, "str | Callable[[re.Match[str]], str]"]) -> list[Rule]:
    return [(re.compile(pattern), replacement) for pattern, replacement in pairs]


def _apply(text: str, rules: list[Rule]) -> str:
    for pattern, replacement in rules:
        text = pattern.sub(replacement, text)
    return text


_MARKDOWN_LINK = re.compile(r"\[([^\[\]]+?)\]\((https?://[^)\s]+)\)")
_LINE_PREFIXES = [re.compile(p) for p in (r"^#{1,6}\s+", r"^>\s+", r"^[-*+]\s+", r"^\d+[.)]\s+")]

# Set aside in this order; a later pattern sees the stand-ins of the earlier ones.
_SET_ASIDE = [re.compile(p) for p in (
    r"https?://[^\s\u3000，。！？；、）】》〉」』]+",  # URL
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?![\w.-])",  # e-mail
    r"(?<![A-Za-z0-9_])@[A-Za-z0-9_]{1,32}",  # @mention
    r"(?<![A-Za-z0-9_])(?:u|r)/[A-Za-z0-9_]+",  # u/name, r/name
    r"(?<![A-Za-z0-9_])#(?!\s)[^\s#]+",  # #hashtag
    r"(?<![A-Za-z0-9_])\.(?=[A-Za-z0-9._-]*[A-Za-z0-9])[A-Za-z0-9._-]+",  # .env, .map
    # file-like: letters somewhere, a separator somewhere, alphanumeric at both ends
    rf"(?<![A-Za-z0-9_])(?=[{_TOKEN_CHARS}]*[A-Za-z])(?=[{_TOKEN_CHARS}]*[._/+:-])"
    rf"[A-Za-z0-9](?:[{_TOKEN_CHARS}]*[A-Za-z0-9])?(?![A-Za-z0-9_])",
)]

_SPACES = _rules(
    (r"[ \t\r\f\v]+", " "),
    (rf"({_CJK})\s+(?={_CJK})", r"\1"),
    (rf"({_CJK})\s+(?=\d)", r"\1"),
    (rf"(\d)\s+(?={_CJK})", r"\1"),
    (rf"({_CJK})(?={_LATIN_TOKEN})", r"\1 "),
    (rf"({_LATIN_TOKEN})(?={_CJK})", r"\1 "),
    (r" {2,}", " "),
    (r"\s+([，。！？；：、”’」』】）》])", r"\1"),
    (r"([（【「『《“‘])\s+", r"\1"),
    (r"([，。！？；：、])\s*", r"\1"),
    (r"\s+([,.;!?])", r"\1"),
    (r" {2,}", " "),
)

_SENTENCE_START = r"(^|[。！？!?；;]\s*)"
_BRACKETED_SENTENCE = _rules(
    (_SENTENCE_START + r"[【〖『「]([^】〗』」]+)[】〗』」]\s*", r"\1\2。"),
)
_STRUCTURE = _rules(
    # a title standing alone (before a stand-in, a dash run, the end or a pause mark) loses its marks
    (_SENTENCE_START + rf"《([^》]+)》(?=\s*(?:{_SLOT_RE}|[—–―-]{{2,}}|$|[。！？!?；;，,]))", r"\1\2"),
    (r"\s*(?:<[-=]+>|[-=]+>|<[-=]+|[→←↔⇒⇐⇔⟶⟵⟷⟹⟸⟺↦↤↪↩])\s*", "，"),
    (r"\s*[—–―-]{2,}\s*", "。"),
)


def _question_exclamation(m: re.Match[str]) -> str:
    run = m.group(0)
    question = "?" in run or "？" in run
    exclamation = "!" in run or "！" in run
    return "？！" if question and exclamation else "？" if question else "！"


_PUNCTUATION_RUNS = _rules(
    (r"\.{3,}|…{2,}", "。"),
    (r"[。．]{2,}", "。"),
    (r"[，,]{2,}", "，"),
    (r"[!！]{2,}", "！"),
    (r"[?？]{2,}", "？"),
    (r"[!?！？]{2,}", _question_exclamation),
)


def normalize_text(text: str) -> str:
    """The model's own clean-up of `text` (upstream's `normalize_tts_text`, exactly)."""
    text = _strip_invisible(text)
    text = _markdown_lines(text)
    text, aside = _set_aside(text)
    text = _apply(text, _SPACES).strip()
    for _ in range(2):  # twice, so that back-to-back bracketed sentences all open up
        text = _apply(text, _BRACKETED_SENTENCE)
    text = _apply(text, _STRUCTURE)
    text = _apply(text, _PUNCTUATION_RUNS)
    text = _apply(text, _SPACES).strip()
    # Put back in the order they were set aside: a stand-in inside a later token stays as it is,
    # as upstream leaves it.
    for index, original in enumerate(aside):
        text = text.replace(_SLOT.format(index), original)
    return text.strip()


def _strip_invisible(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u3000", " ")
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")


def _markdown_lines(text: str) -> str:
    text = _MARKDOWN_LINK.sub(r"\1 \2", text)
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            for prefix in _LINE_PREFIXES:
                line = prefix.sub("", line, count=1)
            lines.append(line)
    return "。".join(lines)


def _set_aside(text: str) -> tuple[str, list[str]]:
    aside: list[str] = []

    def stand_in(m: re.Match[str]) -> str:
        aside.append(m.group(0))
        return _SLOT.format(len(aside) - 1)

    for pattern in _SET_ASIDE:
        text = pattern.sub(stand_in, text)
    return text, aside
