"""Word error rate: word-level edit distance between a segment's text and a transcription.

Both sides are normalized the same way: Unicode NFKC, lowercase, curly apostrophes made
straight, punctuation removed (an apostrophe inside a word stays: "can't", "o'clock"), hyphens
and dashes split words. Numbers stay as the text writes them ("1851" is one word); an ASR that
spells them out counts as wrong there, which is why the WER threshold is loose.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
# A number with its inner separators ("3.5", "1,000"), or letters/digits with apostrophes only inside.
_WORD = re.compile(r"\d+(?:[.,]\d+)*(?![^\W_])|[^\W_]+(?:'[^\W_]+)*")


def normalize_words(text: str) -> list[str]:
    """The words of ``text`` as WER compares them."""
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
    return _WORD.findall(text)


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Fewest substitutions, deletions and insertions turning ``reference`` into ``hypothesis``."""
    previous = list(range(len(hypothesis) + 1))
    for i, word in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, heard in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1,  # deletion
                             current[j - 1] + 1,  # insertion
                             previous[j - 1] + (word != heard))  # substitution or match
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float | None:
    """Edits per reference word (may exceed 1 with many insertions); None when the reference
    has no words to measure against."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return None
    return edit_distance(ref, hyp) / len(ref)
