"""Narration throughput with the tiny model on Moby-Dick's chapters: the continuous schedule
against the round-based one it replaced, on a real local Ray.

    python bench/narrate.py [--chapters 20] [--segments-per-chapter 0] [--capacity 8] [--round-chapters 4] [--json PATH]

Both schedules narrate the first --chapters chapters (whole, or their first
--segments-per-chapter segments) with one narrator actor, each into a fresh store, timed from
the actor's start:
  - continuous (the product, at its CPU default of 8 rows): the actor is handed every run
    (chapters longer than plan.max_run_seconds are several) and keeps its rows full, submitting
    a run's next segment the moment the previous one is accepted;
  - rounds (the baseline, as narration ran before, at its default of 4 chapters per call): the
    actor takes --round-chapters chapters at a time and, round after round, generates the
    current segment of each (one batch) and waits for the longest before the next round; the
    batch shrinks as chapters end, and new chapters come only when all of them are done.
Prints segments per second of each, the engine's useful-row fraction (row-steps that generated
audio / row-steps computed) and the speed-up. The tiny model makes noise; the point is the
schedule.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from jobs import ray_runtime  # noqa: E402
from jobs.main import register_resolvers  # noqa: E402
from jobs.narrate import make_plan, prepare, run_tasks  # noqa: E402
from moss_model.codec.rates import DEFAULT_FRAME_RATE  # noqa: E402
from pipeline.narration.narrate import RunTask  # noqa: E402
from pipeline.narration.store import SegmentStore  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
BOOK = PROJECT.parent / "shared" / "data" / "books" / "moby-dick.epub"
VOICE = PROJECT.parent / "shared" / "data" / "voices" / "reference_en.m4a"


class RoundsActor(ray_runtime.NarratorActor):
    """The round-based schedule on the same narrator: rounds of one segment per chapter."""

    def narrate_in_rounds(self, chapters: list[RunTask], per_round: int) -> list:
        reports = []
        chapters = sorted(chapters, key=lambda c: c.est_frames, reverse=True)  # longest first, as it was
        for first in range(0, len(chapters), per_round):
            group = chapters[first : first + per_round]
            for position in range(max(len(r.segments) for r in group)):
                step = [replace(r, segments=(r.segments[position],)) for r in group if position < len(r.segments)]
                reports.extend(self.narrator.narrate(step))  # returns when the round's longest segment is done
        return reports


def setup_for(output: Path, capacity: int):
    register_resolvers()  # the ${stem:...} resolver the config uses
    with initialize_config_dir(config_dir=str(PROJECT / "conf"), version_base=None):
        cfg = compose("config", overrides=[f"input={BOOK}", f"output={output}", "model=tiny", f"voice={VOICE}",
                                           "cluster.num_actors=1", f"narration.capacity={capacity}"])
    setup = prepare(cfg)
    return setup, make_plan(cfg, setup)


def chosen_runs(plan, chapters: int, per_chapter: int) -> list[RunTask]:
    """The runs of the first `chapters` chapters (each cut to its first `per_chapter` segments, if given)."""
    kept = sorted({s.chapter_index for s in plan.segments})[:chapters]
    if per_chapter:
        keys = {s.key for s in plan.segments if s.chapter_index in kept and s.segment_index < per_chapter}
    else:
        keys = {s.key for s in plan.segments if s.chapter_index in kept}
    runs = [replace(r, segments=tuple(s for s in r.segments if s.key in keys)) for r in run_tasks(plan)]
    return [r for r in runs if r.segments]


def whole_chapters(runs: list[RunTask]) -> list[RunTask]:
    """The runs of each chapter joined back into one chain (the round-based schedule had no runs)."""
    chapters: dict[int, list[RunTask]] = {}
    for run in runs:
        chapters.setdefault(run.chapter_index, []).append(run)
    return [replace(parts[0], segments=tuple(s for p in sorted(parts, key=lambda r: r.run_index) for s in p.segments))
            for parts in chapters.values()]


def figures(name: str, reports: list, segments: int, wall: float) -> dict:
    calls = {r.call_id: r for r in reports}.values()
    row_steps = sum(r.row_steps for r in calls)
    useful = sum(r.useful_row_steps for r in calls) / row_steps if row_steps else 0.0
    result = {"segments": segments, "wall_seconds": wall, "segments_per_second": segments / wall,
              "useful_fraction": useful, "audio_seconds": sum(r.frames for r in reports) / DEFAULT_FRAME_RATE}
    print(f"{name:>10}: {segments} segments, {result['audio_seconds']:.0f} s of audio in {wall:.1f} s: "
          f"{result['segments_per_second']:.2f} segments/s, useful rows {useful:.3f}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chapters", type=int, default=20)
    parser.add_argument("--segments-per-chapter", type=int, default=0, help="0: whole chapters")
    parser.add_argument("--capacity", type=int, default=8, help="the continuous actor's engine rows")
    parser.add_argument("--round-chapters", type=int, default=4, help="the baseline's chapters per call (and rows)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    ray.init(include_dashboard=False, log_to_driver=False, num_cpus=2)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("rounds", "continuous"):
            setup, plan = setup_for(Path(tmp) / name, args.capacity if name == "continuous" else args.round_chapters)
            runs = chosen_runs(plan, args.chapters, args.segments_per_chapter)
            segments = sum(len(r.segments) for r in runs)
            store = SegmentStore(str(setup.store))
            started = time.perf_counter()  # both include starting the actor and loading the model
            if name == "continuous":
                reports = ray_runtime.narrate_runs(runs, setup, store, total=segments)
            else:
                actor = ray.remote(num_cpus=setup.cluster.cpus_per_actor)(RoundsActor).remote(setup, store.root, None)
                reports = ray.get(actor.narrate_in_rounds.remote(whole_chapters(runs), args.round_chapters))
                ray.kill(actor)
            wall = time.perf_counter() - started
            results[name] = figures(name, reports, segments, wall)
    ray.shutdown()
    speedup = results["continuous"]["segments_per_second"] / results["rounds"]["segments_per_second"]
    print(f"continuous over rounds: {speedup:.2f}x segments/s (target 2); useful rows "
          f"{results['continuous']['useful_fraction']:.3f} (target 0.9) vs {results['rounds']['useful_fraction']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({**results, "speedup": speedup}, indent=2))


if __name__ == "__main__":
    main()
