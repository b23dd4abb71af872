"""How the generation engine runs its decode steps: eagerly, with fixed shapes, or as a CUDA graph.

A decode step at small batch is a thousand small kernels. Launched one by one from Python the
launches cost more than the GPU work, so on CUDA the engine records steps as CUDA graphs and
replays them with a single call each. A graph replays fixed addresses and shapes: the KV cache
and the step's inputs live in buffers the decoder owns, the new token's cache slot is a tensor,
and attention spans a fixed window of the cache under a mask (`MossTTSDelayModel.decode_step`).
The window is the filled part of the cache rounded up to `WINDOW_QUANTUM` slots, so attention
never reads much more than a growing cache would; each window has its graphs, captured on first
use and kept with the decoder, which serves every later call at its batch size.

  eager   attention over the cache filled so far (shapes grow each step); the CPU default
  static  the fixed-shape step, run eagerly (what a graph replays; testable on CPU)
  graph   the fixed-shape step replayed from CUDA graphs, one per window and text-head variant;
          the CUDA default

With `compile_layers`, the fixed-shape modes run each layer's two halves around attention
compiled by torch.compile (fused elementwise chains: fewer, larger kernels in the graph).
It is on by default with graphs: on an H200 it took the 8B step at
batch 1 from 8.3 to 7.5 ms (bench/cuda_check.sh), for a compile of a minute or two per process.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from moss_model.backbone import EAGER_KERNELS, compiled_layer_kernels
from moss_model.model import Logits, MossTTSDelayModel

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


class EagerDecoder:
    """Attends over the cache filled so far: no wasted work on CPU, but shapes change every step."""

    def __init__(self, model: MossTTSDelayModel, batch: int, capacity: int) -> None:
        self.model = model
        self.cache = model.allocate_cache(batch, capacity)
        self.key_valid = torch.zeros(batch, capacity, dtype=torch.bool, device=model.device)

    def decode(self, row_ids: torch.Tensor, positions: torch.Tensor, slot: int, text_ids: torch.Tensor | None) -> Logits:
        """row_ids [B, 1, 1+n_vq] at positions [B, 1] into cache slot `slot`; logits of that token."""
        return self.model.step(row_ids, positions, self.key_valid, self.cache, slot, text_ids=text_ids)


class StaticDecoder:
    """The fixed-shape step: inputs are copied into buffers the decoder owns, the slot is a tensor."""

    def __init__(self, model: MossTTSDelayModel, batch: int, capacity: int, compile_layers: bool = False) -> None:
        device = model.device
        self.model = model
        self.kernels = compiled_layer_kernels() if compile_layers else EAGER_KERNELS
        self.cache = model.allocate_cache(batch, round_to_window(capacity))
        self.key_valid = torch.zeros(batch, self.cache.capacity, dtype=torch.bool, device=device)
        self.row_ids = torch.zeros(batch, 1, model.config.n_vq + 1, dtype=torch.long, device=device)
        self.positions = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.slot = torch.zeros(1, dtype=torch.long, device=device)

    @property
    def capacity(self) -> int:
        return self.cache.capacity

    def decode(self, row_ids: torch.Tensor, positions: torch.Tensor, slot: int, text_ids: torch.Tensor | None) -> Logits:
        self._load(row_ids, positions, slot)
        return self._step(text_ids, self._window(slot))

    def _load(self, row_ids: torch.Tensor, positions: torch.Tensor, slot: int) -> None:
        self.row_ids.copy_(row_ids)
        self.positions.copy_(positions)
        self.slot.fill_(slot)

    def _window(self, slot: int) -> int:
        return min(round_to_window(slot + 1), self.capacity)

    def _step(self, text_ids: torch.Tensor | None, window: int) -> Logits:
        return self.model.decode_step(
            self.row_ids, self.positions, self.key_valid[:, :window], self.cache.window(window), self.slot,
            text_ids, self.kernels,
        )


@dataclass
class CapturedStep:
    text_ids: torch.Tensor | None  # kept so that the id in the key stays this tensor's
    replay: Callable[[], None]
    outputs: Logits


class GraphDecoder(StaticDecoder):
    """The fixed-shape step, recorded once per (window, text-head variant) and replayed.

    The returned logits are the graph's own output buffers: the next replay overwrites them,
    so a caller reads them before its next decode (the engine samples from them at once).
    """

    def __init__(self, model: MossTTSDelayModel, batch: int, capacity: int, compile_layers: bool = False) -> None:
        super().__init__(model, batch, capacity, compile_layers)
        self.graphs: dict[tuple[int, int | None], CapturedStep] = {}
        self.capture_failed = False
        # One memory pool for all of this decoder's graphs: they never run at once, and each
        # graph's outputs stay referenced, so no capture reuses another graph's outputs.
        self.memory_pool = torch.cuda.graph_pool_handle() if model.device.type == "cuda" else None

    def decode(self, row_ids: torch.Tensor, positions: torch.Tensor, slot: int, text_ids: torch.Tensor | None) -> Logits:
        self._load(row_ids, positions, slot)
        window = self._window(slot)
        if self.capture_failed:
            return self._step(text_ids, window)
        key = (window, None if text_ids is None else id(text_ids))
        if key not in self.graphs:
            try:
                replay, outputs = capture_cuda_graph(
                    lambda: self._step(text_ids, window), self.model.device, self.memory_pool
                )
            except RuntimeError as error:  # a driver, kernel or compiler that fails: slower, still correct
                warnings.warn(
                    f"CUDA graph capture failed, decoding without graphs or compiled layers: {error}",
                    RuntimeWarning, stacklevel=2,
                )
                self.capture_failed = True
                self.kernels = EAGER_KERNELS  # torch.compile errors are RuntimeErrors too
                return self._step(text_ids, window)
            self.graphs[key] = CapturedStep(text_ids, replay, outputs)
        captured = self.graphs[key]
        captured.replay()
        return captured.outputs


def capture_cuda_graph(
    step: Callable[[], StepOutput], device: torch.device, memory_pool: tuple[int, int] | None = None
) -> tuple[Callable[[], None], StepOutput]:
    """Record `step` as a CUDA graph: (replay, the graph's outputs, which each replay rewrites).

    The warm-up runs execute the step for real with the inputs already loaded. That is harmless
    for a decode step, which is idempotent (it rewrites the same cache slot with the same
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
