"""Narration throughput with the tiny model on Moby-Dick's chapters: the continuous schedule
against the round-based one it replaced, on a real local Ray.

    python bench/narrate.py [--chapters 20] [--segments-per-chapter 6] [--capacity 4] [--json PATH]

Both schedules narrate the opening segments of the first --chapters chapters with one narrator
actor whose engine has --capacity rows, each into a fresh store:
  - continuous (the product): the actor is handed every run and keeps its rows full, submitting
    a run's next segment the moment the previous one is accepted;
  - rounds (the baseline, as narration ran before): the actor takes --capacity chapters at a
    time and, round after round, generates the current segment of each and waits for the
    longest before the next round; new chapters come only when those are done.
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

import pipeline.run  # noqa: E402,F401  (registers the ${stem:...} resolver)
from jobs import ray_runtime  # noqa: E402
from jobs.narrate import make_plan, prepare, run_tasks  # noqa: E402
from pipeline.narrate import RunTask  # noqa: E402
from pipeline.store import SegmentStore  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
BOOK = PROJECT.parent / "shared" / "data" / "books" / "moby-dick.epub"
VOICE = PROJECT.parent / "shared" / "data" / "voices" / "reference_en.m4a"


class RoundsActor(ray_runtime.NarratorActor):
    """The round-based schedule on the same narrator: rounds of one segment per chapter."""

    def narrate_in_rounds(self, runs: list[RunTask], per_round: int) -> list:
        reports = []
        for first in range(0, len(runs), per_round):
            group = runs[first : first + per_round]
            for position in range(max(len(r.segments) for r in group)):
                step = [replace(r, segments=(r.segments[position],)) for r in group if position < len(r.segments)]
                reports.extend(self.narrator.narrate(step))  # returns when the round's longest segment is done
        return reports


def setup_for(output: Path, capacity: int):
    with initialize_config_dir(config_dir=str(PROJECT / "conf"), version_base=None):
        cfg = compose("config", overrides=[f"input={BOOK}", f"output={output}", "model=tiny", f"voice={VOICE}",
                                           "cluster.num_actors=1", f"narration.capacity={capacity}"])
    setup = prepare(cfg)
    return setup, make_plan(cfg, setup)


def opening_runs(plan, chapters: int, per_chapter: int) -> list[RunTask]:
    runs = [r for r in run_tasks(plan) if r.run_index == 0]
    runs = sorted(runs, key=lambda r: r.chapter_index)[:chapters]
    return [replace(r, segments=r.segments[:per_chapter]) for r in runs]


def figures(name: str, reports: list, segments: int, wall: float) -> dict:
    calls = {r.call_id: r for r in reports}.values()
    row_steps = sum(r.row_steps for r in calls)
    useful = sum(r.useful_row_steps for r in calls) / row_steps if row_steps else 0.0
    result = {"segments": segments, "wall_seconds": wall, "segments_per_second": segments / wall,
              "useful_fraction": useful, "audio_seconds": sum(r.frames for r in reports) / 12.5}
    print(f"{name:>10}: {segments} segments, {result['audio_seconds']:.0f} s of audio in {wall:.1f} s: "
          f"{result['segments_per_second']:.2f} segments/s, useful rows {useful:.3f}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chapters", type=int, default=20)
    parser.add_argument("--segments-per-chapter", type=int, default=6)
    parser.add_argument("--capacity", type=int, default=4, help="engine rows of the actor (and chapters per round)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    ray.init(include_dashboard=False, log_to_driver=False, num_cpus=2)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("rounds", "continuous"):
            setup, plan = setup_for(Path(tmp) / name, args.capacity)
            runs = opening_runs(plan, args.chapters, args.segments_per_chapter)
            segments = sum(len(r.segments) for r in runs)
            store = SegmentStore(str(setup.store))
            started = time.perf_counter()  # both include starting the actor and loading the model
            if name == "continuous":
                reports = ray_runtime.narrate_runs(runs, setup, store, total=segments)
            else:
                actor = ray.remote(num_cpus=setup.cluster.cpus_per_actor)(RoundsActor).remote(setup, store.root, None)
                reports = ray.get(actor.narrate_in_rounds.remote(runs, args.capacity))
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
