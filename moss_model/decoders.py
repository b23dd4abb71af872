"""How the generation engine runs its fixed-shape steps: eagerly, or replayed from CUDA graphs.

A decode step at small batch is a thousand small kernels. Launched one by one from Python the
launches cost more than the GPU work, so on CUDA the engine records its steps as CUDA graphs
and replays them with a single call each. A graph replays fixed addresses and shapes: the KV
cache, the step's inputs and its outputs live in buffers the engine owns, each row's cache slot
is a tensor, and attention spans a fixed window of the cache under a mask
(`MossTTSDelayModel.decode_rows`). The window is the longest row rounded up to
`WINDOW_QUANTUM` slots, so attention never reads much more than the rows hold; each window has
its graphs, captured on first use and kept for the engine's life.

  eager   attention over exactly the slots the longest row fills (shapes grow each step); the CPU default
  static  the fixed-shape step, run eagerly (what a graph replays; testable on CPU)
  graph   the fixed-shape steps replayed from CUDA graphs; the CUDA default

With `compile_layers`, the fixed-shape modes run each layer's two halves around attention
compiled by torch.compile (fused elementwise chains: fewer, larger kernels in the graph).
It is on by default with graphs: on an H200 it took the 8B step at
batch 1 from 8.3 to 7.5 ms (bench/cuda_check.sh), for a compile of a minute or two per process.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Hashable, TypeVar

import torch


DECODE_MODES = ("auto", "eager", "static", "graph")
WINDOW_QUANTUM = 256  # attention windows and fixed-shape caches are multiples of this many slots
GRAPH_WARMUP_RUNS = 2
StepOutput = TypeVar("StepOutput")


def resolve_decode_mode(mode: str, device: torch.device, compile_layers: bool = False) -> str:
    """'auto' is 'graph' on CUDA and 'eager' elsewhere; 'graph' needs CUDA."""
    if mode not in DECODE_MODES:
        raise ValueError(f"decode mode must be one of {', '.join(DECODE_MODES)}, got {mode!r}")
    if mode == "auto":
        mode = "graph" if device.type == "cuda" else "eager"
    if mode == "graph" and device.type != "cuda":
        raise ValueError(f"decode mode 'graph' needs a CUDA device (the model is on {device}); use 'static' or 'eager'")
    if mode == "eager" and compile_layers:
        raise ValueError("compile_layers needs a fixed-shape decode mode ('static' or 'graph'), not 'eager'")
    return mode


def resolve_compile_layers(compile_layers: bool | None, mode: str) -> bool:
    """None (the default) compiles layers for CUDA graph decoding only."""
    return mode == "graph" if compile_layers is None else compile_layers


def round_to_window(slots: int) -> int:
    """`slots` rounded up to a whole number of windows."""
    return -(-slots // WINDOW_QUANTUM) * WINDOW_QUANTUM


class StepGraphs:
    """Steps of the engine recorded as CUDA graphs, one per key (a window, a text-head variant,
    a sampling plan), each replayed in place of running its step.

    A step reads and writes only buffers the engine owns. Recording runs the step for real a few
    times (the warm-ups); a step that is not idempotent names the tensors it mutates, which are
    saved before recording and put back after, so that the replay that follows is its only run.
    A failed capture warns once and from then on runs the steps eagerly (slower, still correct).
    """

    def __init__(self, device: torch.device, what: str, on_failure: Callable[[], None] | None = None) -> None:
        self.device = device
        self.what = what
        self.on_failure = on_failure
        self.replays: dict[Hashable, Callable[[], None]] = {}
        self.capture_failed = False
        # One memory pool for all of these graphs: they never run at once.
        self.memory_pool = torch.cuda.graph_pool_handle() if device.type == "cuda" else None

    def run(self, key: Hashable, step: Callable[[], object], mutable: Callable[[], list[torch.Tensor]] | None = None) -> None:
        """Run `step` by replaying its recording under `key` (recorded now if new)."""
        if not self.capture_failed and key not in self.replays:
            self._capture(key, step, mutable)
        if self.capture_failed:
            step()
        else:
            self.replays[key]()

    def _capture(self, key: Hashable, step: Callable[[], object], mutable) -> None:
        saved = [t.clone() for t in mutable()] if mutable is not None else []
        try:
            self.replays[key], _ = capture_cuda_graph(step, self.device, self.memory_pool)
        except RuntimeError as error:  # a driver, kernel or compiler that fails: slower, still correct
            warnings.warn(
                f"CUDA graph capture of the {self.what} failed, running it without graphs: {error}",
                RuntimeWarning, stacklevel=3,
            )
            self.capture_failed = True
            if self.on_failure is not None:
                self.on_failure()
        for tensor, value in zip(mutable() if mutable is not None else [], saved):
            tensor.copy_(value)


def capture_cuda_graph(
    step: Callable[[], StepOutput],
    device: torch.device,
    memory_pool: torch.cuda._POOL_HANDLE | None = None,  # what torch.cuda.graph_pool_handle() returns
) -> tuple[Callable[[], None], StepOutput]:
    """Record `step` as a CUDA graph: (replay, the graph's outputs, which each replay rewrites).

    The warm-up runs execute the step for real with the inputs already loaded. That is harmless
    for a decode step, which is idempotent (it rewrites the same cache slots with the same
    values); a step that is not (sampling advances the row state) must undo them itself.
    """
    with torch.cuda.device(device):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_RUNS):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=memory_pool):
            outputs = step()
    return graph.replay, outputs
