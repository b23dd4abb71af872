"""The continuous-batching engine against static batches, on a stream of narration-shaped requests.

    python bench/engine.py                                   # tiny config on CPU: 200 requests, capacity 32
    python bench/engine.py --json out.json                   # also write the figures the issue names
    python bench/engine.py --config 8b --device cuda         # audio-s/s at capacity 64 and 128 (a GPU run)

The requests follow the Moby-Dick plan (`../shared/data/books/moby-dick.epub`): a sample of its
segments, evenly spaced through the book, each asking for the plan's estimated frames. Every
prompt carries the same voice reference, so they share one head (the prefix cache's case).
The random model is steered into audio and kept there (as in bench/generate.py), so each row
runs exactly to its own frame limit: the plan's estimate.

The same stream also runs as static batches of the same size in the same process, in the
stream's order: a batch is submitted whole and the next waits until its longest row ends (what
`generate()` on fixed batches did), each on an engine of its own size as `generate()` keeps
them, so a short last batch computes only its own rows. On CPU the two schedules take turns
step by step, so that the machine's noise falls on both alike, until each has run --repeats
whole passes (the faster one runs more); on CUDA they alternate whole passes. Each prints its
median pass: steps, wall time and this process's CPU time, the useful-row fraction (row-steps
of rows still generating / row-steps computed), audio seconds per wall second and the prefix
cache's share of the prompt tokens.
It then gives the ceiling of the step ratio: the static run's steps over the fewest steps a
full pool could take for the same rows, and the same by row-steps. Every request also costs its
prefill and its text-head rows in both schedules, so the measured speed-up stays below the
ceiling. On CPU the script also prints the median plain step (no admission, no text-head run)
at each pool size, prices both schedules' steps at the static run's plain steps (a CPU step
costs partly per step, partly per row: the ceiling of the speed-up on this machine,
`plain_time_ratio_ceiling`), and splits off the rest of each run: the work each request costs
once whatever the schedule.
With --config 8b the script prints audio-s/s at each --capacities entry
(the 8B shape in bf16 with random weights, about 440-token prompts and 190-frame segments).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, fields
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generate import build  # noqa: E402  (the tiny and 8B shapes with random weights)

from moss_model.codec.rates import DEFAULT_FRAME_RATE  # noqa: E402
from moss_model.decoders import DECODE_MODES  # noqa: E402
from moss_model.engine import PREFILL_CHUNK, Engine, EngineStats, request_tokens  # noqa: E402
from moss_model.processor import SpeechRequest  # noqa: E402
from moss_model.sampling import DecodingParams  # noqa: E402

BOOK = Path(__file__).resolve().parents[2] / "shared" / "data" / "books" / "moby-dick.epub"


def plan_frames(book: Path, count: int) -> tuple[list[int], str]:
    """Estimated frames of `count` segments spread evenly through the book's plan."""
    if not book.is_file():
        rng = np.random.default_rng(0)  # a bare clone: a seeded draw shaped like the book's plan
        return [int(x) for x in np.clip(rng.normal(160, 80, count), 4, 375)], f"seeded draw ({book} not found)"
    from pipeline.reading import read_book
    from pipeline.text.keys import KeyInputs
    from pipeline.text.plan import PlanOptions, build_plan

    keys = KeyInputs(voice_id="bench", model_id="bench", model_revision="bench", decoding={},
                     carryover_bound_frames=250)
    segments = build_plan(read_book(book), PlanOptions(), None, keys).segments
    stride = max(1, len(segments) // count)
    return [max(1, s.est_frames) for s in segments[::stride][:count]], f"{book.name}, {len(segments)} segments"


def prompts_for(processor, frames: list[int], voice_frames: int, text_words: int, n_vq: int):
    voice = torch.randint(0, 1024, (voice_frames, n_vq), generator=torch.Generator().manual_seed(0))
    words = "call me ishmael some years ago never mind how long precisely having little or no money".split()
    prompts = []
    for i in range(len(frames)):
        text = " ".join(words[(i + j) % len(words)] for j in range(text_words)) + "."
        prompts.append(processor.build_prompt(SpeechRequest(text=text, reference=[voice])))
    return prompts


def make_engine(model, processor, capacity: int, work, mode: str, admission: str = "fifo",
                prefill_chunk: int = PREFILL_CHUNK) -> Engine:
    """An engine whose rows hold the largest request of `work`; mode: a --decode choice."""
    rows = max(request_tokens(p, f, model.config.n_vq, prefill_chunk) for p, f in work)
    mode, _, extra = mode.partition("+")
    compile_layers = None if mode == "auto" else extra == "compile"
    return Engine(model, processor, capacity, max_row_tokens=rows, decode_mode=mode, compile_layers=compile_layers,
                  admission=admission, prefill_chunk=prefill_chunk)


class Clock:
    """Wall seconds and this process's CPU seconds (the latter barely moves when other work shares the machine)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


class Pass:
    """One run of the stream under one schedule, stepped from outside: on CPU two schedules take
    turns step by step, so the machine's noise falls on both alike.

    batches: (engine, [(request id, (prompt, frames))]) in order; a batch is submitted whole and
    the next waits until it has ended (the continuous pool is one batch of the whole stream).
    Besides its time, a pass keeps the wall seconds of its plain steps by pool size: steps that
    neither admitted requests nor ran the whole text head (the work every request costs once, in
    any schedule). On CPU a step's time is its cost; on CUDA steps are asynchronous and the
    plain-step figures mean nothing.
    """

    def __init__(self, batches: list[tuple[Engine, list]], decoding: DecodingParams) -> None:
        self.seconds = self.cpu_seconds = 0.0
        self.plain: dict[int, list[float]] = {}
        self.longest_row = 0  # the most rows one request generated: no schedule takes fewer steps
        self.stats = EngineStats()  # summed over its engines, once it has ended
        self.steps: dict[int, int] = {}  # pool size -> steps run at that size, once it has ended
        self._steps = self._run(batches, decoding)

    def _run(self, batches: list[tuple[Engine, list]], decoding: DecodingParams) -> Iterator[bool]:
        """Yields True after each step."""
        engines = {engine.capacity: engine for engine, _ in batches}
        for engine, requests in batches:
            for request_id, (prompt, frames) in requests:
                engine.submit(prompt, request_id, decoding, frames)
            plain = self.plain.setdefault(engine.capacity, [])
            while engine.busy:
                before = (engine.stats.admissions, engine.stats.text_head_rows)
                started = time.perf_counter()
                finished = engine.step()
                seconds = time.perf_counter() - started
                if (engine.stats.admissions, engine.stats.text_head_rows) == before:
                    plain.append(seconds)
                self.longest_row = max([self.longest_row] + [f.result.rows.shape[0] for f in finished])
                yield True
        for engine in engines.values():
            synchronize(engine)
        self.stats = EngineStats(**{f.name: sum(getattr(e.stats, f.name) for e in engines.values())
                                    for f in fields(EngineStats)})
        self.steps = {size: e.stats.steps for size, e in engines.items()}

    def advance(self, steps: int | None) -> bool:
        """Run `steps` more steps (None: to the end), adding their time; whether the pass goes on."""
        clock = Clock()
        going, taken = True, 0
        while going and (steps is None or taken < steps):
            going = next(self._steps, False)
            taken += 1
        wall, cpu = clock.read()
        self.seconds += wall
        self.cpu_seconds += cpu
        return going

    def plain_step_seconds(self, capacity: int) -> float:
        """The median plain step of a pool of `capacity` slots."""
        return float(np.median(self.plain[capacity])) if self.plain.get(capacity) else 0.0

    def plain_seconds(self) -> float:
        """What its steps would cost at the plain steps' median cost."""
        return sum(n * self.plain_step_seconds(capacity) for capacity, n in self.steps.items())


def continuous_pass(model, processor, work, decoding, capacity: int, mode: str, admission: str,
                    prefill_chunk: int) -> Pass:
    engine = make_engine(model, processor, capacity, work, mode, admission, prefill_chunk)
    return Pass([(engine, list(enumerate(work)))], decoding)


def static_pass(model, processor, work, decoding, batch: int, mode: str, prefill_chunk: int) -> Pass:
    """Batches of `batch` in the stream's order, each on an engine of its own size (as generate()
    keeps them: a short last batch computes only its own rows)."""
    numbered = list(enumerate(work))
    batches = [numbered[first : first + batch] for first in range(0, len(work), batch)]
    engines = {len(b): make_engine(model, processor, len(b), work, mode, prefill_chunk=prefill_chunk) for b in batches}
    return Pass([(engines[len(b)], b) for b in batches], decoding)


def race(make: dict[str, Callable[[], Pass]], repeats: int, turn: int | None) -> dict[str, list[Pass]]:
    """Whole passes of each schedule, at least `repeats` of each, the schedules taking turns of
    `turn` steps (None: whole passes, one schedule after the other). A pass left unfinished when
    the last schedule completes its repeats is dropped."""
    done: dict[str, list[Pass]] = {name: [] for name in make}
    current = {name: build() for name, build in make.items()}
    while min(len(passes) for passes in done.values()) < repeats:
        for name, build in make.items():
            if not current[name].advance(turn):
                done[name].append(current[name])
                current[name] = build()
    return done


def median_pass(passes: list[Pass]) -> Pass:
    return sorted(passes, key=lambda p: p.seconds)[len(passes) // 2]


def synchronize(engine: Engine) -> None:
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)


def report(name: str, run: Pass, frames: int, plain_steps: bool = False) -> dict:
    """Print a pass's figures and return them; plain_steps: with its plain steps' split (CPU)."""
    s, seconds = run.stats, run.seconds
    figures = {
        "seconds": seconds, "cpu_seconds": run.cpu_seconds, "steps": s.steps,
        "ms_per_step": seconds / max(1, s.steps) * 1000, "useful_fraction": s.useful_fraction,
        "audio_seconds_per_second": frames / DEFAULT_FRAME_RATE / seconds,
        "prefix_cache_saved_fraction": s.prefix_cache_saved_fraction, "host_checks": s.host_checks,
        "prefill_seconds": s.prefill_seconds, "prefill_tokens": s.prefill_tokens,
        "prefill_positions": s.prefill_positions, "attention_used_fraction": s.attention_used_fraction,
    }
    if plain_steps:
        figures["plain_step_ms"] = {size: run.plain_step_seconds(size) * 1000 for size in run.steps}
        figures["per_request_work_seconds"] = seconds - run.plain_seconds()
    print(f"{name:>10}: {seconds:7.2f} s ({run.cpu_seconds:.2f} CPU-s), {s.steps:5d} steps "
          f"({figures['ms_per_step']:.2f} ms/step), useful rows {s.useful_fraction:.3f}, "
          f"{figures['audio_seconds_per_second']:.1f} audio-s/s, prefill {s.prefill_seconds:.2f} s "
          f"({s.prefill_tokens} tokens computed in {s.prefill_positions} positions with the fixed shapes' padding, "
          f"{s.prefix_cache_saved_fraction:.0%} from the prefix cache), "
          f"{s.host_checks} host checks, {s.attention_used_fraction:.0%} of the KV slots attention spans in use")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", choices=["tiny", "8b"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="default: float32 on CPU, bfloat16 on CUDA")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--capacity", type=int, default=32, help="tiny: the pool and the static batch size")
    parser.add_argument("--capacities", type=int, nargs="+", default=[64, 128], help="8b: pool sizes to time")
    parser.add_argument("--pools", action="store_true", help="time --capacities (the 8b default) with any config")
    parser.add_argument("--voice-frames", type=int, default=None, help="reference length (default: tiny 125, 8b 250: about 440-token prompts)")
    parser.add_argument("--segment-frames", type=int, default=190, help="8b: frames per segment")
    parser.add_argument("--decode", default="auto", choices=[*DECODE_MODES, *(f"{m}+compile" for m in ("static", "graph"))],
                        help="decode mode (see moss_model.decoders); auto = the engine's defaults (CUDA graphs over "
                             "compiled layers on CUDA, eager on CPU); graph and static run uncompiled layers")
    parser.add_argument("--prefill-chunk", type=int, nargs="+", default=[PREFILL_CHUNK],
                        help="prompt tokens per prefill forward (pools: each value in turn; the stream: one)")
    parser.add_argument("--admission", default="longest_first", help="the continuous engine's admission order")
    parser.add_argument("--book", type=Path, default=BOOK)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="whole passes of each schedule at least (the median is reported)")
    args = parser.parse_args()
    pools = args.config == "8b" or args.pools
    if not pools and len(args.prefill_chunk) > 1:
        parser.error("the stream against static batches takes one --prefill-chunk")
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if args.device.startswith("cuda") else torch.float32)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, processor = build(args.config, args.device, dtype)
    decoding = DecodingParams()
    n_vq = model.config.n_vq

    if pools:
        return run_pools(args, model, processor, decoding)
    [chunk] = args.prefill_chunk

    frames, source = plan_frames(args.book, args.requests)
    prompts = prompts_for(processor, frames, args.voice_frames or 125, 24, n_vq)
    work = list(zip(prompts, frames))
    total_frames = sum(frames)
    print(f"config={args.config} device={args.device} dtype={dtype} requests={len(work)} capacity={args.capacity}")
    print(f"frames per request from {source}: mean {np.mean(frames):.0f}, max {max(frames)}; "
          f"prompts {np.mean([p.ids.shape[0] for p in prompts]):.0f} tokens, shared head {prompts[0].shared_length}")
    # On CPU the two schedules take turns step by step, so that the machine's noise falls on both
    # alike; on CUDA a step's time is not its cost until synchronised, so they alternate whole passes.
    turn = None if args.device.startswith("cuda") else 1
    passes = race({
        "static": lambda: static_pass(model, processor, work, decoding, args.capacity, args.decode, chunk),
        "continuous": lambda: continuous_pass(model, processor, work, decoding, args.capacity, args.decode,
                                              args.admission, chunk),
    }, args.repeats, turn)
    on_cpu = args.device == "cpu"
    static_run, continuous_run = median_pass(passes["static"]), median_pass(passes["continuous"])
    print(f"the median of {len(passes['static'])} static and {len(passes['continuous'])} continuous passes"
          + (", taking turns step by step:" if turn else ":"))
    static = report("static", static_run, total_frames, on_cpu)
    continuous = report("continuous", continuous_run, total_frames, on_cpu)
    # No schedule of this pool can run fewer steps than the useful row-steps fill, nor fewer than
    # the longest request's rows: that bounds the gain, before the work every request costs in
    # both schedules (its prefill, its text-head rows).
    fewest_steps = max(math.ceil(continuous_run.stats.useful_row_steps / args.capacity), continuous_run.longest_row)
    figures = {
        "useful_fraction": continuous["useful_fraction"],
        "static_useful_fraction": static["useful_fraction"],
        "speedup_vs_static": static_run.seconds / continuous_run.seconds,
        "cpu_speedup_vs_static": static_run.cpu_seconds / continuous_run.cpu_seconds,
        "steps_ratio": static_run.stats.steps / continuous_run.stats.steps,
        "steps_ratio_ceiling": static_run.stats.steps / fewest_steps,
        # The same bound by row-steps: a short last static batch computes fewer rows per step.
        "row_steps_ratio_ceiling": static_run.stats.row_steps / (fewest_steps * args.capacity),
        "prefix_cache_saved_fraction": continuous["prefix_cache_saved_fraction"],
        "continuous": continuous, "static": static,
    }
    print(f"speed-up vs static batches: {figures['speedup_vs_static']:.2f}x wall, "
          f"{figures['cpu_speedup_vs_static']:.2f}x CPU time (target 2); useful fraction "
          f"{figures['useful_fraction']:.3f} (target 0.9) vs {figures['static_useful_fraction']:.3f}; prefix cache saved "
          f"{figures['prefix_cache_saved_fraction']:.0%} of prompt tokens")
    print(f"steps: {figures['steps_ratio']:.3f}x fewer than static; no pool of {args.capacity} can do better than "
          f"{figures['steps_ratio_ceiling']:.3f}x on this stream ({fewest_steps} steps), "
          f"{figures['row_steps_ratio_ceiling']:.3f}x by row-steps")
    if on_cpu:
        # A step's cost on CPU is partly fixed and partly per row: price both schedules' steps at
        # the static run's measured plain steps (one cost model for both), per-request work left out.
        steps_ms = ", ".join(f"{size} rows {ms:.2f} ms" for size, ms in sorted(static["plain_step_ms"].items()))
        print(f"plain steps (no admission, no text-head run), median: {steps_ms} static; "
              f"{continuous['plain_step_ms'][args.capacity]:.2f} ms continuous; the rest, the work each request costs "
              f"once (prefill, text head): {static['per_request_work_seconds']:.2f} s static, "
              f"{continuous['per_request_work_seconds']:.2f} s continuous")
        plain = static_run.plain_step_seconds(args.capacity)
        if plain:  # (a stream shorter than one batch has no static step of the pool's size)
            ceiling = figures["plain_time_ratio_ceiling"] = static_run.plain_seconds() / (fewest_steps * plain)
            print(f"priced at the static run's plain steps, the static steps cost {ceiling:.3f}x what the fewest "
                  "would: the ceiling of the speed-up on this machine, before the work each request costs once")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def run_pools(args, model, processor, decoding) -> int:
    """Audio-s/s of full pools (steady state: twice the capacity in requests, after a warm-up run),
    for each capacity and each prefill chunk (the first chunk's figures are the headline)."""
    n_vq = model.config.n_vq
    results: dict[int, dict[int, dict]] = {chunk: {} for chunk in args.prefill_chunk}
    for capacity in args.capacities:
        frames = [args.segment_frames] * (2 * capacity)
        prompts = prompts_for(processor, frames, args.voice_frames or 250, 40, n_vq)
        work = list(zip(prompts, frames))
        print(f"capacity {capacity}: {len(work)} requests, prompts {prompts[0].ids.shape[0]} tokens "
              f"(shared head {prompts[0].shared_length}), {args.segment_frames} frames each")
        for chunk in args.prefill_chunk:
            engine = make_engine(model, processor, capacity, work[:capacity], args.decode, args.admission, chunk)
            Pass([(engine, list(enumerate(work[:capacity])))], decoding).advance(None)  # warm-up: graphs, compilation
            engine.reset_stats()
            run = Pass([(engine, list(enumerate(work)))], decoding)
            run.advance(None)
            results[chunk][capacity] = report(f"pool {capacity}, prefill chunks of {chunk}", run, sum(frames))
            del engine, run  # its KV cache, before the next pool's
    if args.json:
        headline = results[args.prefill_chunk[0]]
        args.json.write_text(json.dumps({
            "audio_seconds_per_second": {k: v["audio_seconds_per_second"] for k, v in headline.items()},
            "by_prefill_chunk": {chunk: {k: v["audio_seconds_per_second"] for k, v in runs.items()}
                                 for chunk, runs in results.items()},
            "runs": headline,
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
