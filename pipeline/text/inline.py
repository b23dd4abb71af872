"""Inline controls that pass through normalization untouched.

- tone-numbered Pinyin: ``nin2 hao3``
- IPA between slashes: ``/həˈloʊ/``
- pause markers: ``[pause 1.5s]``

`find_controls` locates them; the segmenter never splits inside one, the lexicon
never rewrites one, and the spoken-form normalizer leaves them as they are.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_INITIAL = r"(?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])"
_FINAL = (
    r"(?:iang|iong|uang|ueng|ang|eng|ing|ong|uai|iao|ian|uan|üan|van"
    r"|ai|ei|ao|ou|an|en|in|un|ün|vn|ia|ie|iu|ua|uo|ui|üe|ve|ue|er|io|a|o|e|i|u|ü|v)"
)
PINYIN_SYLLABLE = rf"{_INITIAL}?{_FINAL}[1-5]"
_PINYIN_RUN = rf"(?<![A-Za-z0-9ü]){PINYIN_SYLLABLE}(?:[ ]+{PINYIN_SYLLABLE})*(?![A-Za-z0-9ü])"

# Characters that only occur in IPA: the IPA extensions and spacing modifier
# letters (ː ˈ ˌ ...), combining diacritics, and a few Latin-1/Greek letters IPA uses.
_IPA_ONLY = "\u0250-\u02ff\u0300-\u036fæðθŋçβχħʕ"
_IPA = rf"(?<![^\s(\[{{\"'“‘（「])/(?=[^/\n]*[{_IPA_ONLY}])[^/\n]{{1,400}}/(?![A-Za-z0-9])"

_MARKER = r"\[\s*(?i:pause)\s+(?P<pause>\d+(?:\.\d+)?)\s*s\s*\]"

_CONTROL_RE = re.compile(
    r"(?=[\[/a-zü])"
    rf"(?:(?P<marker>{_MARKER})|(?P<ipa>{_IPA})|(?P<pinyin>{_PINYIN_RUN}))"
)
# Every control holds one of these characters; text without any has no controls.
_CONTROL_HINT_RE = re.compile(r"[1-5/\[]")
_PINYIN_RUN_RE = re.compile(rf"^{_PINYIN_RUN}$")
_PINYIN_COUNT_RE = re.compile(PINYIN_SYLLABLE)


@dataclass(frozen=True)
class Control:
    start: int
    end: int
    kind: str  # "marker" | "ipa" | "pinyin"
    pause_seconds: float = 0.0


def find_controls(text: str) -> list[Control]:
    """Inline controls in `text`, in order, not overlapping."""
    if not _CONTROL_HINT_RE.search(text):
        return []
    found = []
    for m in _CONTROL_RE.finditer(text):
        kind = _kind(m)
        pause = float(m.group("pause")) if kind == "marker" else 0.0
        found.append(Control(m.start(), m.end(), kind, pause))
    return found


def _kind(m: re.Match) -> str:
    for kind in ("marker", "ipa", "pinyin"):
        if m.group(kind) is not None:
            return kind
    raise AssertionError("unreachable")


def is_pinyin(text: str) -> bool:
    """True when `text` is only lowercase tone-numbered Pinyin syllables separated by spaces."""
    return bool(_PINYIN_RUN_RE.match(text))


def is_ipa(text: str) -> bool:
    """True when `text` is one IPA span between slashes."""
    m = _CONTROL_RE.fullmatch(text)
    return bool(m) and m.group("ipa") is not None


def count_pinyin_syllables(text: str) -> int:
    return len(_PINYIN_COUNT_RE.findall(text)) if _CONTROL_HINT_RE.search(text) else 0


def split_controls(text: str) -> list[tuple[str, str | None]]:
    """`text` cut into (piece, control kind or None for plain text); joining the pieces gives `text`."""
    return [(piece, control.kind if control else None) for piece, control in split_with_controls(text)]


def split_with_controls(text: str) -> list[tuple[str, Control | None]]:
    """Like `split_controls`, with each control's details (such as a marker's pause)."""
    pieces: list[tuple[str, Control | None]] = []
    pos = 0
    for c in find_controls(text):
        if c.start > pos:
            pieces.append((text[pos:c.start], None))
        pieces.append((text[c.start:c.end], c))
        pos = c.end
    if pos < len(text):
        pieces.append((text[pos:], None))
    return pieces
