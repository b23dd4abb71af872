"""Planning one huge paragraph takes time linear in its length (issue 13).

The checks compare two sizes measured in the same process (a ratio, not an absolute time, so a
busy machine slows both alike): four times the text must take well under sixteen times as long,
which a quadratic step would need. Best of a few runs, after a warm-up.
"""
import random
import time

import pytest

from pipeline.reading.book import Book, Chapter, Paragraph
from pipeline.text.keys import KeyInputs
from pipeline.text.plan import PlanOptions, build_plan
from pipeline.text.segment import segment_paragraph

MAX_RATIO = 8.0  # for 4x the text: linear is ~4, quadratic ~16
KEYS = KeyInputs(voice_id="v", model_id="m", model_revision="r", decoding={},
                 carryover_bound_frames=250)
_VOCABULARY = "the whale swam on and far into grey sea where Ahab waited silent ship's mast— sail".split()


def one_sentence(characters: int, seed: int = 0) -> str:
    """A paragraph that is one sentence: words, a clause comma now and then (clauses longer than
    the maximum, so both the clause and the word cuts are used), no sentence end."""
    rng = random.Random(seed)
    words, size = [], 0
    while size < characters:
        word = rng.choice(_VOCABULARY) + ("," if rng.random() < 0.01 else "")
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


def best_seconds(run, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def test_segmenting_one_huge_sentence_is_linear():
    def measure(unit: str) -> float:
        return len(unit) / 12.0

    small, large = one_sentence(250_000), one_sentence(1_000_000)
    segment_paragraph(small[:10_000], measure, 18.0, 30.0)  # warm-up
    small_s = best_seconds(lambda: segment_paragraph(small, measure, 18.0, 30.0), 3)
    large_s = best_seconds(lambda: segment_paragraph(large, measure, 18.0, 30.0), 3)
    assert large_s < MAX_RATIO * small_s, f"250 KB: {small_s:.2f} s, 1 MB: {large_s:.2f} s"


def _book(text: str) -> Book:
    return Book(title="Huge", author="", language="en", source="<huge>",
                chapters=[Chapter("One", [Paragraph(text, "line 1")], "line 1")])


@pytest.mark.slow  # plans 5 MB of text (about 20 s, half a GB of memory)
def test_planning_one_huge_paragraph_is_linear():
    small, large = one_sentence(1_000_000), one_sentence(4_000_000, seed=1)
    build_plan(_book(small[:20_000]), PlanOptions(), None, KEYS)  # warm-up: language identifier, caches
    small_s = best_seconds(lambda: build_plan(_book(small), PlanOptions(), None, KEYS), 1)
    large_s = best_seconds(lambda: build_plan(_book(large), PlanOptions(), None, KEYS), 1)
    assert large_s < MAX_RATIO * small_s, f"1 MB: {small_s:.2f} s, 4 MB: {large_s:.2f} s"
