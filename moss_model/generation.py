"""The batched generation engine: prefill, then one step per row of the delay pattern.

Every row of the batch is an independent request with its own prompt length, seed and state.
The text channel of each row follows the state machine of the released model (see the spec):

  outside audio  -> sample text (pad, slots and <|audio_end|> forbidden); <|audio_start|> enters audio
  inside audio   -> sample only the generation slot or the delay slot
  delay slot     -> n_vq-1 forced delay slots, then a forced <|audio_end|>, then text again
  <|im_end|>     -> the row stops

Codebook k is sampled from k+1 steps after <|audio_start|> until k steps after the delay slot.
The KV cache is allocated once for prompt + max steps (see `decoders` for how steps run);
outputs go into a preallocated buffer.
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from moss_model import decoders
from moss_model.decoders import EagerDecoder, GraphDecoder, StaticDecoder, resolve_compile_layers, resolve_decode_mode
from moss_model.model import Logits, MossTTSDelayModel
from moss_model.processor import Batch, MossTTSProcessor, Prompt
from moss_model.sampling import DecodingParams, apply_repetition_penalty, row_keys, sample, step_keys

NOT_DELAYING = -1
TEXT_STEPS_ALLOWANCE = 16  # text tokens a row may spend outside audio before and after its audio
KEPT_DECODERS = 2  # fixed-shape decoders (a KV cache and graphs each), by batch size, kept across calls


@dataclass
class RowResult:
    """What one request produced."""

    frames: torch.Tensor  # F, n_vq: the new audio (continuation prefix excluded)
    audio_runs: list[torch.Tensor]  # every run of audio the row produced (frames is the first)
    rows: torch.Tensor  # G, 1+n_vq: the generated rows, through the stop
    finished: bool  # ended with <|im_end|>
    hit_frame_limit: bool  # audio was closed by max_new_frames


@dataclass
class GenerationStats:
    steps: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0


class RowState:
    """Per-row state of the text channel's state machine, as tensors [B], updated in place
    (a recorded sampling step reads and writes the same buffers on every replay)."""

    FIELDS = ("stopped", "in_audio", "audio_len", "delay", "new_frames", "forced_close", "max_new_frames")

    def __init__(self, batch: Batch, model: MossTTSDelayModel, max_new_frames: int) -> None:
        c = model.config
        device = model.device
        ids = batch.input_ids[..., 0].to(device)
        B, T = ids.shape
        self.stopped = torch.zeros(B, dtype=torch.bool, device=device)
        last = ids[:, -1]
        continuing = (last == c.audio_start_token_id) | (last == c.audio_assistant_gen_slot_token_id)
        is_start = ids == c.audio_start_token_id
        last_start = T - 1 - is_start.flip(1).int().argmax(dim=1)
        has_start = is_start.any(dim=1)
        self.in_audio = continuing & has_start
        # rows since <|audio_start|>, counting it: codebook k is open when audio_len > k
        self.audio_len = torch.where(self.in_audio, T - last_start, torch.zeros_like(last_start))
        self.delay = torch.full((B,), NOT_DELAYING, dtype=torch.long, device=device)
        self.new_frames = torch.zeros(B, dtype=torch.long, device=device)
        self.forced_close = torch.zeros(B, dtype=torch.bool, device=device)
        self.max_new_frames = torch.full((B,), max_new_frames, dtype=torch.long, device=device)

    def tensors(self) -> list[torch.Tensor]:
        return [getattr(self, name) for name in self.FIELDS]

    def load(self, other: RowState) -> None:
        for mine, theirs in zip(self.tensors(), other.tensors()):
            mine.copy_(theirs)


@dataclass
class CapturedSampling:
    replay: Callable[[], None]
    row: torch.Tensor  # the recording's output: the sampled row [B, 1+n_vq]


class SamplingGraphs:
    """The sampling step inside audio, recorded as CUDA graphs (one per decoding setting) for
    one batch size, with the buffers those graphs read and write.

    Inside audio, a step's sampling and state update is about 250 small kernels; launched one
    by one from Python they cost the host more time than the decode step costs the GPU, which
    then waits. One replay launches them all. The graphs read only buffers owned here: the
    logits are copied in, the step number is a device tensor, and the row state, row keys and
    seen codes are loaded at the start of each generate() call.
    """

    def __init__(self, batch: int, device: torch.device) -> None:
        self.batch = batch
        self.device = device
        self.state: RowState | None = None
        self.keys = torch.zeros(batch, dtype=torch.long, device=device)
        self.step = torch.zeros((), dtype=torch.long, device=device)
        self.seen: torch.Tensor | None = None
        self.logits: Logits | None = None
        self.graphs: dict[DecodingParams, CapturedSampling] = {}
        self.capture_failed = False
        self.memory_pool = torch.cuda.graph_pool_handle() if device.type == "cuda" else None

    def load(
        self, state: RowState, keys: torch.Tensor, seen: torch.Tensor | None
    ) -> tuple[RowState, torch.Tensor, torch.Tensor | None]:
        """This call's starting state copied into the buffers the graphs use; those buffers."""
        if self.state is None:
            self.state = state  # the first call's tensors become the buffers
        else:
            self.state.load(state)
        self.keys.copy_(keys)
        if seen is None:
            return self.state, self.keys, None
        if self.seen is None:
            self.seen = seen
        else:
            self.seen.copy_(seen)
        return self.state, self.keys, self.seen

    def sample(
        self, logits: Logits, step: int, decoding: DecodingParams, next_row: Callable[[Logits, torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """The row of this step: next_row(logits, step tensor), replayed from its recording.

        next_row must read and write only this object's buffers and must not branch on the
        step (the caller records only steps whose Python path is the same).
        """
        if self.logits is None:
            self.logits = Logits(text=logits.text[:, -1:].clone(), audio=logits.audio[:, -1:].clone())
        self.logits.text.copy_(logits.text[:, -1:])
        self.logits.audio.copy_(logits.audio[:, -1:])
        self.step.fill_(step)
        if self.capture_failed:
            return next_row(self.logits, self.step)
        if decoding not in self.graphs:
            captured = self._capture(decoding, next_row)
            if captured is None:
                return next_row(self.logits, self.step)
            self.graphs[decoding] = captured
        captured = self.graphs[decoding]
        captured.replay()
        return captured.row

    def _capture(self, decoding: DecodingParams, next_row) -> CapturedSampling | None:
        # Recording runs the step for real a few times first, which advances the row state:
        # save it and put it back, so that the replay that follows is this step's only run.
        saved = [t.clone() for t in self._mutable()]
        try:
            replay, row = decoders.capture_cuda_graph(lambda: next_row(self.logits, self.step), self.device, self.memory_pool)
        except RuntimeError as error:  # slower, still correct
            warnings.warn(f"CUDA graph capture of sampling failed, sampling without graphs: {error}", RuntimeWarning, stacklevel=3)
            self.capture_failed = True
            captured = None
        else:
            captured = CapturedSampling(replay, row)
        for tensor, value in zip(self._mutable(), saved):
            tensor.copy_(value)
        return captured

    def _mutable(self) -> list[torch.Tensor]:
        return self.state.tensors() + ([self.seen] if self.seen is not None else [])


class Generator:
    """Owns sampling and the step loop for a model; the model only computes logits.

    decode_mode: how decode steps run (see `moss_model.decoders`): 'auto' (CUDA graphs on
    CUDA, eager elsewhere), 'eager', 'static' or 'graph'. compile_layers: fuse each layer's
    elementwise work with torch.compile in the fixed-shape modes (compiled on first use in a process);
    None (the default) turns it on with CUDA graphs and off otherwise.
    Fixed-shape decoders keep their KV cache between calls, so run one `generate` at a time.
    """

    def __init__(
        self, model: MossTTSDelayModel, processor: MossTTSProcessor, decode_mode: str = "auto",
        compile_layers: bool | None = None,
    ) -> None:
        self.model = model
        self.processor = processor
        self.decode_mode = resolve_decode_mode(decode_mode, model.device, bool(compile_layers))
        self.compile_layers = resolve_compile_layers(compile_layers, self.decode_mode)
        self._decoders: OrderedDict[int, StaticDecoder] = OrderedDict()
        self._sampling_graphs: OrderedDict[int, SamplingGraphs] = OrderedDict()
        c = model.config
        device = model.device
        self.n_vq = c.n_vq
        self.codebooks = torch.arange(c.n_vq, device=device)
        self.free_text_forbidden = torch.tensor(
            [c.pad_token_id, c.audio_assistant_gen_slot_token_id, c.audio_assistant_delay_slot_token_id, c.audio_end_token_id],
            device=device,
        )
        self.slot_ids = torch.tensor(
            [c.audio_assistant_gen_slot_token_id, c.audio_assistant_delay_slot_token_id], device=device
        )

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[Prompt],
        seeds: list[int],
        decoding: DecodingParams = DecodingParams(),
        max_new_frames: int = 1500,
        stats: GenerationStats | None = None,
    ) -> list[RowResult]:
        """Generate every prompt to its end (or its frame limit) in one batch.

        The host reads the row states only when some row may leave audio: inside audio a row
        needs just the two slot logits, and once it takes the delay slot it cannot sample text
        for n_vq+1 steps, so the host knows in advance which steps need the full text head.
        """
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        if max_new_frames < 1:
            raise ValueError(f"max_new_frames must be at least 1, got {max_new_frames}")
        model, c = self.model, self.model.config
        device = model.device
        batch = self.processor.pad_batch(prompts)
        input_ids = batch.input_ids.to(device)
        B, T, C = input_ids.shape
        max_steps = max_new_frames + self.n_vq + 2 * TEXT_STEPS_ALLOWANCE
        decoder = self._decoder(B, T + max_steps)
        cache, key_valid = decoder.cache, decoder.key_valid
        key_valid.zero_()
        key_valid[:, :T] = batch.attention_mask.to(device)
        positions = (key_valid[:, :T].long().cumsum(-1) - 1).clamp(min=0)
        keys = row_keys(torch.tensor(seeds, dtype=torch.long, device=device))
        state = RowState(batch, model, max_new_frames)
        seen = self._seen_codes(input_ids, batch.attention_mask.to(device), decoding)
        sampling_graphs = self._sampling_graphs_for(B) if self.decode_mode == "graph" else None
        if sampling_graphs is not None:
            state, keys, seen = sampling_graphs.load(state, keys, seen)
        out = torch.full((B, max_steps, C), c.audio_pad_code, dtype=torch.long, device=device)
        out[..., 0] = c.pad_token_id

        started = time.perf_counter()
        logits = model.step(input_ids, positions, key_valid, cache, start=0)
        next_position = positions[:, -1] + 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        decode_started = time.perf_counter()
        steps = 0
        next_full_text = 0
        for step in range(max_steps):
            slots_only = logits.text.shape[-1] == len(self.slot_ids)
            if sampling_graphs is not None and step >= 1 and slots_only:
                row = sampling_graphs.sample(
                    logits, step, decoding,
                    lambda inputs, step_tensor: self._next_row(inputs, state, step, step_keys(keys, step_tensor), decoding, seen),
                )
            else:
                row = self._next_row(logits, state, step, step_keys(keys, step), decoding, seen)
            out[:, step] = row
            steps = step + 1
            key_valid[:, T + step] = ~state.stopped
            if step + 1 == max_steps:
                break
            if step + 1 >= next_full_text:  # host sync: only here may a row have stopped
                if bool(state.stopped.all()):
                    break
                next_full_text = step + 1 + self._steps_until_free_text(state)
            text_ids = None if step + 1 >= next_full_text else self.slot_ids
            logits = decoder.decode(row[:, None], next_position[:, None], T + step, text_ids)
            next_position = next_position + 1
        if stats is not None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            stats.steps += steps
            stats.prefill_seconds += decode_started - started
            stats.decode_seconds += time.perf_counter() - decode_started
        return self._results(prompts, out[:, :steps], state)

    def _decoder(self, batch: int, capacity: int) -> EagerDecoder | StaticDecoder:
        """A decoder with room for `capacity` tokens per row.

        Fixed-shape decoders are kept by batch size and reused (with their graphs); one that is
        too small for this call is replaced by a larger one.
        """
        if self.decode_mode == "eager":
            return EagerDecoder(self.model, batch, capacity)
        decoder = self._decoders.pop(batch, None)
        if decoder is None or decoder.capacity < capacity:
            decoder = None  # drop the small one before allocating its successor
            while len(self._decoders) >= KEPT_DECODERS:
                self._decoders.popitem(last=False)
            kind = GraphDecoder if self.decode_mode == "graph" else StaticDecoder
            decoder = kind(self.model, batch, capacity, compile_layers=self.compile_layers)
        self._decoders[batch] = decoder  # most recently used last
        return decoder

    def _sampling_graphs_for(self, batch: int) -> SamplingGraphs:
        graphs = self._sampling_graphs.pop(batch, None) or SamplingGraphs(batch, self.model.device)
        while len(self._sampling_graphs) >= KEPT_DECODERS:
            self._sampling_graphs.popitem(last=False)
        self._sampling_graphs[batch] = graphs  # most recently used last
        return graphs

    def _seen_codes(self, input_ids: torch.Tensor, mask: torch.Tensor, decoding: DecodingParams) -> torch.Tensor | None:
        """Per row and codebook, which codes the history holds (for the repetition penalty)."""
        if decoding.audio.repetition_penalty == 1.0:
            return None
        c = self.model.config
        B = input_ids.shape[0]
        seen = torch.zeros(B, self.n_vq, c.audio_vocab_size + 1, dtype=torch.bool, device=input_ids.device)
        codes = input_ids[..., 1:].masked_fill(~mask[..., None], c.audio_pad_code)  # B, T, n_vq
        seen.scatter_(2, codes.transpose(1, 2), True)
        seen[..., c.audio_pad_code] = False
        return seen

    def _steps_until_free_text(self, state: RowState) -> int:
        """Steps from the next one until some row may sample free text (0 = the next step)."""
        never = 1 << 30
        until = torch.where(state.in_audio, self.n_vq + 1, 0)  # a delay slot, then n_vq forced steps
        until = torch.where(state.delay >= 1, self.n_vq + 1 - state.delay, until)
        until = torch.where(state.stopped, never, until)
        return int(until.min())

    def _next_row(self, logits, state: RowState, step: int, keys, decoding: DecodingParams, seen) -> torch.Tensor:
        """Sample one row [B, 1+n_vq] for every request and advance the state machine in place.

        logits.text holds the whole vocabulary, or only the two slot ids on steps where the
        host knows that no row samples free text. keys: this step's (step_keys). The step
        number only steers Python branches that matter on the first step and on full-text steps.
        """
        c = self.model.config
        full_text = logits.text.shape[-1] != len(self.slot_ids)
        text_logits = logits.text[:, -1].float()  # B, V (or B, 2)
        audio_logits = logits.audio[:, -1].float()  # B, n_vq, A

        delaying = state.delay >= 1
        forced_delay = ~state.stopped & delaying & (state.delay < self.n_vq)
        forced_end = ~state.stopped & (state.delay == self.n_vq)
        in_audio = state.in_audio & ~forced_end
        samples_text = ~state.stopped & ~delaying

        # Inside audio: only the generation slot or the delay slot (indexing copies the two logits).
        slot_logits = text_logits[:, self.slot_ids] if full_text else text_logits.clone()
        if full_text:
            # Outside audio: a free choice over the vocabulary minus the audio-only tokens.
            text_logits.index_fill_(1, self.free_text_forbidden, float("-inf"))  # index_put_ made the host wait (--sync-debug)
            if step <= self.n_vq:
                text_logits[:, c.im_end_token_id] = float("-inf")
            free_text = sample(text_logits, decoding.text, keys, 0)
        else:
            free_text = torch.full_like(state.delay, c.pad_token_id)  # no row samples free text now
        if step == 0:
            slot_logits[:, 1] = float("-inf")
        frame_full = state.new_frames >= state.max_new_frames - 1
        slot_logits[:, 0] = slot_logits[:, 0].masked_fill(frame_full, float("-inf"))
        slot_choice = self.slot_ids[sample(slot_logits, decoding.text, keys, 0)]
        state.forced_close |= in_audio & samples_text & frame_full

        text = torch.where(in_audio, slot_choice, free_text)
        after_forced_close = ~in_audio & state.forced_close & ~delaying
        text = torch.where(after_forced_close, torch.full_like(text, c.im_end_token_id), text)
        text = torch.where(samples_text, text, torch.full_like(text, c.pad_token_id))
        text = torch.where(forced_delay, torch.full_like(text, c.audio_assistant_delay_slot_token_id), text)
        text = torch.where(forced_end, torch.full_like(text, c.audio_end_token_id), text)

        # Audio: codebook k is open k+1 rows after <|audio_start|> and until k rows after the delay slot.
        k = self.codebooks[None, :]
        open_codebooks = (state.audio_len[:, None] > k) & ((state.delay[:, None] == NOT_DELAYING) | (k >= state.delay[:, None]))
        if seen is not None:
            audio_logits = apply_repetition_penalty(audio_logits, seen, decoding.audio.repetition_penalty)
        audio_logits[..., c.audio_pad_code] = float("-inf")
        codes = sample(audio_logits, decoding.audio, keys, self.codebooks + 1)
        codes = torch.where(open_codebooks, codes, torch.full_like(codes, c.audio_pad_code))
        if seen is not None:
            seen.scatter_(2, codes[..., None], True)
            seen[..., c.audio_pad_code] = False

        # Advance the state machine (in place: see RowState).
        state.in_audio.copy_((in_audio | (text == c.audio_start_token_id)) & ~forced_end)
        state.stopped |= text == c.im_end_token_id
        audio_step = (text == c.audio_start_token_id) | (text == self.slot_ids[0]) | (text == self.slot_ids[1])
        state.audio_len.copy_(torch.where(text == c.audio_end_token_id, 0, state.audio_len + audio_step.long()))
        frame_row = (text == self.slot_ids[0]) | ((text == self.slot_ids[1]) & ~delaying)
        state.new_frames += frame_row.long()
        starts_delay = (state.delay == NOT_DELAYING) & (text == self.slot_ids[1])
        delay = torch.where(starts_delay, 0, state.delay)
        delay = torch.where(delay != NOT_DELAYING, delay + 1, delay)
        state.delay.copy_(torch.where(delay > self.n_vq, NOT_DELAYING, delay))
        return torch.cat([text[:, None], codes], dim=1)

    def _results(self, prompts: list[Prompt], out: torch.Tensor, state: RowState) -> list[RowResult]:
        c = self.model.config
        out, forced_close = out.cpu(), state.forced_close.cpu()
        results = []
        for row, prompt in enumerate(prompts):
            text = out[row, :, 0]
            ends = torch.nonzero(text == c.im_end_token_id)
            finished = bool(ends.numel())
            generated = out[row, : int(ends[0]) + 1] if finished else out[row]
            tail = self._open_block(prompt)
            runs = self.processor.frames_from_rows(tail, generated, prompt.prefix_frames)
            frames = runs[0] if runs else torch.zeros(0, c.n_vq, dtype=torch.long)
            results.append(RowResult(frames, runs, generated, finished, bool(forced_close[row])))
        return results

    def _open_block(self, prompt: Prompt) -> torch.Tensor:
        """Prompt rows of the audio block a continuation prompt ends inside (from <|audio_start|>)."""
        if not prompt.prefix_frames:
            return prompt.ids[:0]
        return prompt.ids[-(prompt.prefix_frames + 1) :]
