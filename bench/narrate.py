"""Narration throughput with the tiny model on the first chapters of Moby-Dick, 1 and 2 actors.

    python bench/narrate.py [--chapters 3] [--actors 1 2]

Runs only the narration stage (plan, actors, segment store; no finishing) on a real local Ray,
each configuration into a fresh store. Prints segments per second, the fraction of the actors'
wall time spent outside model steps (prefill and decode steps; target under 15 %), and the
speed-up of 2 actors over 1. The tiny model makes noise; the point is the machinery around it.
"""

from __future__ import annotations

import argparse
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
from jobs.narrate import chapter_tasks, make_plan, prepare  # noqa: E402
from pipeline.store import SegmentStore  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
BOOK = PROJECT.parent / "shared" / "data" / "books" / "moby-dick.epub"


def run_once(actors: int, chapters: int, max_segments: int, work: Path) -> dict:
    output = work / f"actors-{actors}"
    with initialize_config_dir(config_dir=str(PROJECT / "conf"), version_base=None):
        cfg = compose("config", overrides=[f"input={BOOK}", f"output={output}", "model=tiny",
                                           f"cluster.num_actors={actors}", "cluster.chapters_per_actor=2"])
    setup = prepare(cfg)
    plan = make_plan(cfg, setup)
    tasks = sorted(chapter_tasks(plan), key=lambda c: c.chapter_index)[:chapters]
    per_chapter = max(1, max_segments // len(tasks))
    tasks = [replace(c, segments=c.segments[:per_chapter]) for c in tasks]  # the opening of each chapter
    segments = sum(len(c.segments) for c in tasks)
    store = SegmentStore(str(output / "store"))
    started = time.perf_counter()
    reports = ray_runtime.narrate_chapters(tasks, setup, store, total=segments)
    wall = time.perf_counter() - started
    model = sum(r.model_seconds for r in reports)
    # the chapters of one narrate() call share its wall time: count each call once
    actor_wall = sum({r.call_id: r.wall_seconds for r in reports}.values())
    return {"segments": segments, "wall": wall, "model": model, "actor_wall": actor_wall,
            "frames": sum(r.frames for r in reports)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chapters", type=int, default=4, help="the first N narrated chapters")
    parser.add_argument("--max-segments", type=int, default=96, help="at most this many segments in all")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    ray.init(include_dashboard=False, log_to_driver=False)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for actors in args.actors:
            r = run_once(actors, args.chapters, args.max_segments, Path(tmp))
            results[actors] = r
            outside = 1 - r["model"] / r["actor_wall"] if r["actor_wall"] else float("nan")
            print(f"actors={actors}: {r['segments']} segments, {r['frames'] / 12.5:.0f} s of audio in "
                  f"{r['wall']:.1f} s wall: {r['segments'] / r['wall']:.2f} segments/s; "
                  f"time outside model steps: {outside:.1%} of actor wall time", flush=True)
    ray.shutdown()
    if 1 in results and 2 in results:
        print(f"speed-up of 2 actors over 1: {results[1]['wall'] / results[2]['wall']:.2f}x")


if __name__ == "__main__":
    main()
