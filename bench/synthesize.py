"""job=synthesize on CPU with the tiny model, on a real local Ray (Ray Data actor pool).

    python bench/synthesize.py [--rows 48] [--capacity 8] [--memory-rows 1000 10000] [--json PATH]

1. Throughput: --rows short utterances x 3 voices (tones written here), synthesized with 1 and
   then 2 actors, each into a fresh output: rows/s over the synthesis (Ray Data start and the
   actors' model loads included), and the share of the actors' time spent outside model steps
   (prompt building, engine bookkeeping, waiting on the finishing thread; decoding, checks, FLAC
   and storing run on that thread beside the steps; target <= 15%).
2. Driver memory: the whole job over 1,000 and 10,000 rows (--memory-rows), rows cut short so
   that 10,000 rows finish on a CPU (narration.max_frames_per_segment=13, about a second of audio
   each, one attempt: every row ends at the limit and is flagged): peak resident memory of the
   driver process (sampled every 10 ms) during the run, and its growth from before the job. Target: flat (10,000 rows <= 1.2x 1,000 rows).
The tiny model makes noise; the point is the pipeline around the model.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np  # noqa: E402
import ray  # noqa: E402
import soundfile  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from jobs.main import register_resolvers  # noqa: E402
from jobs.synthesize import run  # noqa: E402
from moss_model.codec.rates import DEFAULT_SAMPLE_RATE  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WORDS = ("harbour", "lantern", "morning", "river", "silver", "quiet", "window", "garden", "thunder", "paper")


def voices(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, hz in (("alto", 220.0), ("bass", 110.0), ("tenor", 330.0)):
        t = np.arange(int(2.0 * DEFAULT_SAMPLE_RATE)) / DEFAULT_SAMPLE_RATE
        wave = 0.3 * np.sin(2 * np.pi * hz * t) + 0.02 * rng.standard_normal(t.size)
        soundfile.write(folder / f"{name}.wav", wave.astype(np.float32), DEFAULT_SAMPLE_RATE)
    return folder


def texts(path: Path, rows: int) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            words = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(3 + i % 5))
            handle.write(json.dumps({"id": f"row{i:06d}", "text": f"Row {i}: the {words}."}) + "\n")
    return path


def config(*overrides: str):
    register_resolvers()  # the ${stem:...} resolver the config uses
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base=None):
        return compose(config_name="config", overrides=["job=synthesize", "model=tiny", *overrides])


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak resident memory of this process (Linux), sampled in a thread."""

    def __init__(self) -> None:
        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--capacity", type=int, default=8)
    parser.add_argument("--actors", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--memory-rows", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--memory-capacity", type=int, default=32)
    parser.add_argument("--num-cpus", type=int, default=3)  # 2 actors + Ray Data's file listing
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-synthesize-"))
    voice_folder = voices(work / "voices")
    report: dict = {"rows": args.rows, "capacity": args.capacity, "throughput": {}, "memory": {}}
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        small = texts(work / "small.jsonl", args.rows)
        for actors in args.actors:
            summary = run(config(f"input={small}", f"voices={voice_folder}", f"output={work / f'actors{actors}'}",
                                 f"narration.capacity={args.capacity}", f"cluster.num_actors={actors}",
                                 "job.batch_rows=16", f"job.shard_size={args.rows}"))
            report["throughput"][actors] = {k: summary[k] for k in ("rows_per_second", "synthesis_seconds",
                                                                  "outside_model_share", "model_seconds",
                                                                  "actor_seconds", "audio_hours")}
        for rows in args.memory_rows:
            path = texts(work / f"rows{rows}.jsonl", rows)
            with PeakMemory() as memory:
                summary = run(config(f"input={path}", f"voices={voice_folder}", f"output={work / f'memory{rows}'}",
                                     f"narration.capacity={args.memory_capacity}", "cluster.num_actors=2",
                                     "narration.max_frames_per_segment=13", "narration.max_attempts=1", "job.batch_rows=128",
                                     "job.shard_size=1000"))
            report["memory"][rows] = {"peak_rss_mb": memory.peak / 2**20,
                                      "growth_mb": (memory.peak - memory.start) / 2**20,
                                      "rows_per_second": summary["rows_per_second"], "rows": summary["dataset_rows"]}
    finally:
        ray.shutdown()
    print(f"\nthroughput ({args.rows} rows, capacity {args.capacity}, tiny model on CPU, {args.num_cpus} Ray CPUs):")
    for actors, t in report["throughput"].items():
        print(f"  {actors} actor(s): {t['rows_per_second']:.2f} rows/s over {t['synthesis_seconds']:.1f} s; "
              f"{t['outside_model_share']:.0%} of the actors' time outside model steps")
    if {1, 2} <= set(report["throughput"]):
        ratio = report["throughput"][2]["rows_per_second"] / report["throughput"][1]["rows_per_second"]
        print(f"  2 actors / 1 actor: {ratio:.2f}x")
    print("driver memory:")
    for rows, m in report["memory"].items():
        print(f"  {rows} rows: peak RSS {m['peak_rss_mb']:.0f} MiB (+{m['growth_mb']:.0f} MiB during the job), "
              f"{m['rows_per_second']:.1f} rows/s")
    sizes = sorted(report["memory"])
    if len(sizes) >= 2:
        low, high = report["memory"][sizes[0]], report["memory"][sizes[-1]]
        print(f"  {sizes[-1]} / {sizes[0]} rows: peak {high['peak_rss_mb'] / low['peak_rss_mb']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
