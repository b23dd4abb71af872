"""The decode step alone, without sampling: what one forward costs the device and the host.

    python bench/decode_step.py --config 8b --device cuda --batches 1 16

For each batch size and decode mode (static, graph, graph+compile; graphs need CUDA) it runs the
engine's fixed-shape decode step (every slot at position 100, the slot and audio heads) back to
back and prints:
  - step ms: wall time per step with the device kept busy (host launches overlap device work);
  - host ms: time the host spends issuing one step (launches only, measured before the sync);
  - GB/s: weight bytes streamed per step over step ms.
The generation engine's ms/step (bench/generate.py) minus this step's ms is what sampling and
the engine's bookkeeping cost.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.generate import build, streamed_bytes
from moss_model.engine import Engine
from moss_model.decoders import round_to_window


def time_steps(engine: Engine, steps: int) -> tuple[float, float]:
    """(wall ms per step, host ms per step) over `steps` back-to-back decode steps."""
    window = round_to_window(100 + steps + 1)

    def decode() -> None:
        if engine.decode_mode == "graph":
            engine.decode_graphs.run(window, lambda: engine._decode_rows(window))
        else:
            engine._decode_rows(window)

    decode()  # warm-up (capture for graphs)
    sync = torch.cuda.synchronize if engine.device.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    for step in range(steps):
        engine.slots.fill_(100 + step)
        decode()
    issued = time.perf_counter()
    sync()
    finished = time.perf_counter()
    return (finished - started) / steps * 1000, (issued - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["tiny", "8b"], default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    model, processor = build(args.config, args.device, dtype)
    modes = [("static", "static", False)]
    if model.device.type == "cuda":
        modes += [("graph", "graph", False), ("graph+compile", "graph", True)]
    print(f"config={args.config} device={model.device} dtype={dtype}; weights streamed per step: {streamed_bytes(model) / 1e9:.2f} GB")
    print(f"{'mode':>13} {'batch':>5} {'step ms':>8} {'host ms':>8} {'GB/s':>7}")
    for name, mode, compile_layers in modes:
        for B in args.batches:
            engine = Engine(model, processor, B, max_row_tokens=100 + args.steps + 1, decode_mode=mode,
                            compile_layers=compile_layers, prefix_cache_bytes=0)
            with torch.inference_mode():
                step_ms, host_ms = min(time_steps(engine, args.steps) for _ in range(3))
            print(f"{name:>13} {B:>5} {step_ms:>8.2f} {host_ms:>8.2f} {streamed_bytes(model) / step_ms / 1e6:>7.0f}", flush=True)
            del engine


if __name__ == "__main__":
    main()
