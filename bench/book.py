"""How long one GPU would take to narrate a whole book: the real narrator and scheduler, driven
by a stand-in engine on a virtual clock.

    python bench/book.py --simulate [--book PATH] [--capacity 128] [--step-ms 7.5] [--step-ms-per-row 0.02]
                         [--prefill-us-per-token 24] [--json PATH]

The book is planned for real (`../shared/data/books/moby-dick.epub` by default: 138 chapters,
about 6,500 segments, about 23 hours), cut into runs, and handed to the real `Narrator`, which
schedules it exactly as on a GPU: runs start longest first, a run's next segment is submitted
when the previous one is accepted, the prompts are built for real (so prefill costs real
token counts). Only the engine is a stand-in: a row takes its segment's estimated frames plus
the delay tail in steps; a pool step costs --step-ms plus --step-ms-per-row for each of its
rows (a fixed-shape step computes every slot), and admitting a prompt costs
--prefill-us-per-token per token not served from the prefix cache (the voice head is computed
once). The defaults are the 8B shape's figures on an H200 (bench/cuda_check.sh).

Prints the predicted narration time, the useful-row fraction and the critical path (the
longest run alone at the pool's full step time); --json PATH writes
{"predicted_minutes", "useful_fraction", "critical_path_minutes"}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import deque
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moss_model.codec.rates import DEFAULT_FRAME_RATE, DEFAULT_SAMPLE_RATE  # noqa: E402
from moss_model.engine import EngineStats, Finished, RowResult  # noqa: E402
from moss_model.loading import load_tts  # noqa: E402
from moss_model.tiny import write_tiny_model  # noqa: E402
from pipeline.narration.narrate import NarrationOptions, Narrator, RunTask, SegmentAudio, SegmentTask  # noqa: E402
from pipeline.narration.store import StoredSegment  # noqa: E402
from pipeline.narration.voice import Voice  # noqa: E402
from pipeline.reading import read_book  # noqa: E402
from pipeline.text.keys import KeyInputs  # noqa: E402
from pipeline.text.plan import PlanOptions, build_plan  # noqa: E402

BOOK = Path(__file__).resolve().parents[2] / "shared" / "data" / "books" / "moby-dick.epub"


class VirtualEngine:
    """The engine's interface on a virtual clock: a request runs its max_new_frames frames."""

    def __init__(self, capacity: int, n_vq: int, step_ms: float, step_ms_per_row: float, prefill_us_per_token: float,
                 shared_heads: bool = True) -> None:
        self.capacity = capacity
        self.n_vq = n_vq
        self.step_seconds = (step_ms + step_ms_per_row * capacity) / 1000
        self.prefill_seconds_per_token = prefill_us_per_token / 1e6
        self.shared_heads = shared_heads
        self.stats = EngineStats()
        self.clock = 0.0
        self._queue: deque = deque()
        self._rows: dict[int, list] = {}  # request id -> [steps left, frames]
        self._heads: set[bytes] = set()
        self._next_id = 0

    @property
    def occupancy(self) -> int:
        return len(self._rows)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def submit(self, prompt, seed, decoding, max_new_frames) -> int:
        request_id, self._next_id = self._next_id, self._next_id + 1
        self._queue.append((request_id, prompt, max_new_frames))
        return request_id

    def step(self) -> list[Finished]:
        while self._queue and len(self._rows) < self.capacity:
            request_id, prompt, frames = self._queue.popleft()
            head = prompt.ids[: prompt.shared_length].numpy().tobytes()
            cached = prompt.shared_length if self.shared_heads and head in self._heads else 0
            self._heads.add(head)
            computed = prompt.ids.shape[0] - cached
            self.clock += computed * self.prefill_seconds_per_token
            self.stats.prefill_tokens += computed
            self.stats.prefix_cache_tokens += cached
            self.stats.admissions += 1
            self._rows[request_id] = [frames + self.n_vq + 2, frames]  # <|audio_start|>, frames, delay tail, end
        self.clock += self.step_seconds
        self.stats.steps += 1
        self.stats.row_steps += self.capacity
        self.stats.useful_row_steps += len(self._rows)
        finished = []
        for request_id in list(self._rows):
            row = self._rows[request_id]
            row[0] -= 1
            if row[0] == 0:
                del self._rows[request_id]
                frames = torch.zeros(row[1], self.n_vq, dtype=torch.long)
                finished.append(Finished(request_id, RowResult(frames, [frames], frames, True, False)))
        return finished


class MemoryStore:
    """The segment store's interface in memory (a simulated book needs no files)."""

    def __init__(self) -> None:
        self.segments: dict[str, StoredSegment] = {}

    def has(self, key: str) -> bool:
        return key in self.segments

    def get(self, key: str) -> StoredSegment:
        return self.segments[key]

    def put(self, segment: StoredSegment) -> None:
        self.segments[segment.key] = segment

    def keys(self) -> set[str]:
        return set(self.segments)


class RatesOnlyCodec:
    """The simulation decodes nothing: the narrator reads only the codec's rates (the released ones)."""

    sample_rate = DEFAULT_SAMPLE_RATE
    frame_rate = DEFAULT_FRAME_RATE


class SimulatedNarrator(Narrator):
    def measure_segments(self, frames) -> list[SegmentAudio]:
        return [SegmentAudio(0.0)] * len(frames)  # the stand-in makes no audio: the schedule is what is measured


def runs_of(plan) -> list[RunTask]:
    grouped: dict[tuple[int, int], list] = {}
    for s in plan.segments:
        grouped.setdefault((s.chapter_index, s.run_index), []).append(s)
    runs = []
    for (chapter, run), segments in grouped.items():
        tasks, previous = [], None
        for s in segments:
            tasks.append(SegmentTask(s.key, chapter, s.segment_index, s.model_text, max(1, s.est_frames), s.language,
                                     previous.key if previous else None, previous.model_text if previous else None))
            previous = s
        runs.append(RunTask(chapter, run, segments[0].chapter_title, tuple(tasks)))
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulate", action="store_true", required=True, help="drive a stand-in engine (the only mode)")
    parser.add_argument("--book", type=Path, default=BOOK)
    parser.add_argument("--capacity", type=int, default=128, help="rows of the one GPU's engine")
    parser.add_argument("--step-ms", type=float, default=7.5)
    parser.add_argument("--step-ms-per-row", type=float, default=0.02)
    parser.add_argument("--prefill-us-per-token", type=float, default=24.0)
    parser.add_argument("--max-run-seconds", type=float, default=PlanOptions.max_run_seconds)
    parser.add_argument("--voice-seconds", type=float, default=10.0, help="the reference's length")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not args.book.is_file():
        print(f"the book {args.book} is not here: pass --book PATH", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        tts = load_tts(write_tiny_model(Path(tmp) / "tiny", seed=0))  # for its processor: real prompts
    n_vq = tts.config.n_vq
    keys = KeyInputs(voice_id="sim", model_id="sim", model_revision="sim", decoding={},
                     carryover_bound_frames=400)
    plan = build_plan(read_book(args.book), PlanOptions(max_run_seconds=args.max_run_seconds), None, keys)
    runs = runs_of(plan)
    voice_frames = int(args.voice_seconds * DEFAULT_FRAME_RATE)
    voice = Voice("sim", np.zeros((voice_frames, n_vq), dtype=np.int16), "A reference sentence read by the narrator.")
    # frame_limit(est) == est: the stand-in runs each segment for exactly its estimate
    options = NarrationOptions(check_durations=False, max_duration_ratio=1.0, frames_slack=0)
    narrator = SimulatedNarrator(tts, RatesOnlyCodec(), voice, options, MemoryStore())
    narrator.threaded_checks = False  # checks take no virtual time (a thread's real latency would count as steps)
    engine = VirtualEngine(args.capacity, n_vq, args.step_ms, args.step_ms_per_row, args.prefill_us_per_token)
    narrator._engine = engine
    narrator.narrate(runs)

    stats = engine.stats
    longest = max(runs, key=lambda r: r.est_frames)
    critical = sum(s.est_frames + n_vq + 2 for s in longest.segments) * engine.step_seconds
    audio_hours = sum(s.est_frames for s in plan.segments) / DEFAULT_FRAME_RATE / 3600  # planned frames
    result = {
        "predicted_minutes": engine.clock / 60,
        "useful_fraction": stats.useful_fraction,
        "critical_path_minutes": critical / 60,
        "audio_hours": audio_hours,
        "segments": len(plan.segments),
        "runs": len(runs),
        "capacity": args.capacity,
        "prefix_cache_saved_fraction": stats.prefix_cache_saved_fraction,
    }
    print(f"{args.book.name}: {len(plan.segments)} segments in {len(runs)} runs "
          f"({len({r.chapter_index for r in runs})} chapters), {audio_hours:.1f} h of speech")
    print(f"one GPU, {args.capacity} rows, step {engine.step_seconds * 1000:.2f} ms, prefill {args.prefill_us_per_token:g} us/token")
    print(f"predicted narration time: {result['predicted_minutes']:.1f} min (target 6); useful rows "
          f"{result['useful_fraction']:.3f} (target 0.9); critical path {result['critical_path_minutes']:.2f} min "
          f"(target 2, the longest run: chapter {longest.chapter_index + 1}, run {longest.run_index + 1}, "
          f"{len(longest.segments)} segments); prefix cache saved {result['prefix_cache_saved_fraction']:.0%} of prompt tokens")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
