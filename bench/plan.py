"""Benchmark: planning all of Moby-Dick (1.2 M characters) on this machine.

Times reading the EPUB, building the plan (normalization, segmentation, keys) and
writing the Parquet table; prints each, the total, and characters per second.
The budget is 10 s for the whole; the script exits 1 when the best run is over it.

Then plans one huge paragraph of 1 MB and of 5 MB (a single sentence of random words with a
clause comma now and then, so clause and word cuts do the work) and prints seconds per MB of
each: planning must stay linear in a paragraph's length, so the script also exits 1 when the
5 MB paragraph costs more than 2.5 times as much per MB as the 1 MB one.

    python bench/plan.py [--book PATH] [--repeat 3] [--no-huge]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.reading import read_book  # noqa: E402
from pipeline.reading.book import Book, Chapter, Paragraph  # noqa: E402
from pipeline.text.keys import KeyInputs  # noqa: E402
from pipeline.text.plan import PlanOptions, build_plan, write_plan  # noqa: E402

DEFAULT_BOOK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "books" / "moby-dick.epub"
BUDGET_SECONDS = 10.0
HUGE_MB = (1, 5)
MAX_PER_MB_GROWTH = 2.5  # seconds per MB, 5 MB over 1 MB: ~1 when linear, ~5 when quadratic
_WORDS = "the whale swam on and far into grey sea where Ahab waited silent ship's mast— sail".split()
KEYS = KeyInputs(voice_id="default", model_id="OpenMOSS-Team/MOSS-TTS", model_revision="main",
                 decoding={"audio_temperature": 1.7, "audio_top_p": 0.8, "audio_top_k": 25},
                 carryover_bound_frames=250)


def run_once(book_path: Path, out: Path) -> tuple[float, float, float, int, int]:
    start = time.perf_counter()
    book = read_book(book_path)
    read_done = time.perf_counter()
    plan = build_plan(book, PlanOptions(), None, KEYS)
    plan_done = time.perf_counter()
    write_plan(plan, out)
    write_done = time.perf_counter()
    return read_done - start, plan_done - read_done, write_done - plan_done, book.characters, len(plan.segments)


def huge_paragraph(characters: int, seed: int = 0) -> str:
    """One sentence of random words, a clause comma about every hundred words, no sentence end."""
    rng = random.Random(seed)
    words, size = [], 0
    while size < characters:
        word = rng.choice(_WORDS) + ("," if rng.random() < 0.01 else "")
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


def seconds_per_mb(megabytes: int) -> float:
    text = huge_paragraph(megabytes * 1_000_000, seed=megabytes)
    book = Book(title="Huge", author="", language="en", source="<huge>",
                chapters=[Chapter("One", [Paragraph(text, "line 1")], "line 1")])
    start = time.perf_counter()
    plan = build_plan(book, PlanOptions(), None, KEYS)
    seconds = time.perf_counter() - start
    print(f"one paragraph of {megabytes} MB: plan {seconds:.2f} s = {seconds / megabytes:.2f} s per MB "
          f"({len(plan.segments):,} segments)")
    return seconds / megabytes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--book", type=Path, default=DEFAULT_BOOK)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-huge", action="store_true", help="skip the 1 MB and 5 MB single paragraphs")
    args = parser.parse_args()
    best = None
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            read_s, plan_s, write_s, chars, segments = run_once(args.book, Path(tmp) / "plan.parquet")
            total = read_s + plan_s + write_s
            print(f"run {run + 1}: read {read_s:.2f} s, plan {plan_s:.2f} s, write {write_s:.2f} s, "
                  f"total {total:.2f} s, {chars / total:,.0f} characters/s ({chars:,} characters, {segments:,} segments)")
            best = total if best is None else min(best, total)
    print(f"best: {best:.2f} s for {chars:,} characters = {chars / best:,.0f} characters/s "
          f"(budget {BUDGET_SECONDS:.0f} s: {'ok' if best <= BUDGET_SECONDS else 'OVER'})")
    ok = best <= BUDGET_SECONDS
    if not args.no_huge:
        small, large = (seconds_per_mb(mb) for mb in HUGE_MB)
        linear = large <= MAX_PER_MB_GROWTH * small
        print(f"seconds per MB, {HUGE_MB[1]} MB over {HUGE_MB[0]} MB: {large / small:.2f} "
              f"(at most {MAX_PER_MB_GROWTH:g}: {'ok' if linear else 'OVER, planning is not linear'})")
        ok = ok and linear
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
