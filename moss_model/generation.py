"""`Generator.generate`: one fixed batch of requests, run to its end on the continuous-batching engine.

The engine (`moss_model.engine`) owns the step loop, sampling and the row state machine; this
keeps the batch interface: every prompt in, every result out in order. Engines are kept by
batch size (with their KV cache, graphs and prefix cache) and replaced by a larger one when a
call needs longer rows.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from moss_model.decoders import resolve_compile_layers, resolve_decode_mode, round_to_window
from moss_model.engine import Engine, RowResult, request_tokens
from moss_model.model import MossTTSDelayModel
from moss_model.processor import MossTTSProcessor, Prompt
from moss_model.sampling import DecodingParams

KEPT_ENGINES = 2  # engines (a KV cache, graphs and a prefix cache each), by batch size, kept across calls

__all__ = ["GenerationStats", "Generator", "RowResult"]


@dataclass
class GenerationStats:
    steps: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0


class Generator:
    """Batch generation for a model; the model only computes logits.

    decode_mode: how steps run (see `moss_model.decoders`): 'auto' (CUDA graphs on CUDA, eager
    elsewhere), 'eager', 'static' or 'graph'. compile_layers: fuse each layer's elementwise work
    with torch.compile in the fixed-shape modes (compiled on first use in a process); None (the
    default) turns it on with CUDA graphs and off otherwise. Engines keep their KV cache between
    calls, so run one `generate` at a time.
    """

    def __init__(
        self, model: MossTTSDelayModel, processor: MossTTSProcessor, decode_mode: str = "auto",
        compile_layers: bool | None = None,
    ) -> None:
        self.model = model
        self.processor = processor
        self.decode_mode = resolve_decode_mode(decode_mode, model.device, bool(compile_layers))
        self.compile_layers = resolve_compile_layers(compile_layers, self.decode_mode)
        self._engines: OrderedDict[int, Engine] = OrderedDict()

    def generate(
        self,
        prompts: list[Prompt],
        seeds: list[int],
        decoding: DecodingParams = DecodingParams(),
        max_new_frames: int = 1500,
        stats: GenerationStats | None = None,
    ) -> list[RowResult]:
        """Generate every prompt to its end (or its frame limit); results in the prompts' order."""
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        if max_new_frames < 1:
            raise ValueError(f"max_new_frames must be at least 1, got {max_new_frames}")
        needed = max(request_tokens(p, max_new_frames, self.model.config.n_vq) for p in prompts)
        engine = self.engine(len(prompts), needed)
        before = (engine.stats.steps, engine.stats.prefill_seconds, engine.stats.step_seconds)
        ids = [engine.submit(prompt, seed, decoding, max_new_frames) for prompt, seed in zip(prompts, seeds)]
        results = {finished.request_id: finished.result for finished in engine.run()}
        if stats is not None:
            if self.model.device.type == "cuda":
                torch.cuda.synchronize(self.model.device)
            stats.steps += engine.stats.steps - before[0]
            stats.prefill_seconds += engine.stats.prefill_seconds - before[1]
            stats.decode_seconds += engine.stats.step_seconds - before[2]
        return [results[i] for i in ids]

    def engine(self, capacity: int, max_row_tokens: int) -> Engine:
        """An engine of `capacity` slots with rows of at least `max_row_tokens`: a kept one, or a new one."""
        engine = self._engines.pop(capacity, None)
        if engine is None or engine.max_row_tokens < max_row_tokens:
            engine = None  # drop the small one before allocating its successor
            while len(self._engines) >= KEPT_ENGINES:
                self._engines.popitem(last=False)
            engine = Engine(
                self.model, self.processor, capacity, max_row_tokens=round_to_window(max_row_tokens),
                decode_mode=self.decode_mode, compile_layers=self.compile_layers,
            )
        self._engines[capacity] = engine  # most recently used last
        return engine
