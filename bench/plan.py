"""Benchmark: planning all of Moby-Dick (1.2 M characters) on this machine.

Times reading the EPUB, building the plan (normalization, segmentation, keys) and
writing the Parquet table; prints each, the total, and characters per second.
The budget is 10 s for the whole; the script exits 1 when the best run is over it.

    python bench/plan.py [--book PATH] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.keys import KeyInputs  # noqa: E402
from pipeline.plan import PlanOptions, build_plan, write_plan  # noqa: E402
from pipeline.reading import read_book  # noqa: E402

DEFAULT_BOOK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "books" / "moby-dick.epub"
BUDGET_SECONDS = 10.0
KEYS = KeyInputs(voice_id="default", model_id="OpenMOSS-Team/MOSS-TTS", model_revision="main",
                 decoding={"audio_temperature": 1.7, "audio_top_p": 0.8, "audio_top_k": 25},
                 seed_policy="from_key", carryover_bound_frames=250)


def run_once(book_path: Path, out: Path) -> tuple[float, float, float, int, int]:
    start = time.perf_counter()
    book = read_book(book_path)
    read_done = time.perf_counter()
    plan = build_plan(book, PlanOptions(), None, KEYS)
    plan_done = time.perf_counter()
    write_plan(plan, out)
    write_done = time.perf_counter()
    return read_done - start, plan_done - read_done, write_done - plan_done, book.characters, len(plan.segments)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--book", type=Path, default=DEFAULT_BOOK)
    parser.add_argument("--repeat", type=int, default=3)
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
    return 0 if best <= BUDGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
