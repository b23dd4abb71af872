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
from collections import OrderedDict
from dataclasses import dataclass

import torch

from moss_model.decoders import EagerDecoder, GraphDecoder, StaticDecoder, resolve_decode_mode
from moss_model.model import MossTTSDelayModel
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
    """Per-row state of the text channel's state machine, as tensors [B]."""

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
        self.max_new_frames = max_new_frames


class Generator:
    """Owns sampling and the step loop for a model; the model only computes logits.

    decode_mode: how decode steps run (see `moss_model.decoders`): 'auto' (CUDA graphs on
    CUDA, eager elsewhere), 'eager', 'static' or 'graph'. compile_layers: fuse each layer's
    elementwise work with torch.compile in the fixed-shape modes (a one-off compile per batch size).
    Fixed-shape decoders keep their KV cache between calls, so run one `generate` at a time.
    """

    def __init__(
        self, model: MossTTSDelayModel, processor: MossTTSProcessor, decode_mode: str = "auto", compile_layers: bool = False
    ) -> None:
        self.model = model
        self.processor = processor
        self.decode_mode = resolve_decode_mode(decode_mode, model.device, compile_layers)
        self.compile_layers = compile_layers
        self._decoders: OrderedDict[int, StaticDecoder] = OrderedDict()
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
            row = self._next_row(logits, state, step, keys, decoding, seen)
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
        """Sample one row [B, 1+n_vq] for every request and advance the state machine.

        logits.text holds the whole vocabulary, or only the two slot ids on steps where the
        host knows that no row samples free text.
        """
        c = self.model.config
        full_text = logits.text.shape[-1] != len(self.slot_ids)
        text_logits = logits.text[:, -1].float()  # B, V (or B, 2)
        audio_logits = logits.audio[:, -1].float()  # B, n_vq, A
        keys = step_keys(keys, step)

        delaying = state.delay >= 1
        forced_delay = ~state.stopped & delaying & (state.delay < self.n_vq)
        forced_end = ~state.stopped & (state.delay == self.n_vq)
        in_audio = state.in_audio & ~forced_end
        samples_text = ~state.stopped & ~delaying

        # Inside audio: only the generation slot or the delay slot (indexing copies the two logits).
        slot_logits = text_logits[:, self.slot_ids] if full_text else text_logits.clone()
        if full_text:
            # Outside audio: a free choice over the vocabulary minus the audio-only tokens.
            text_logits[:, self.free_text_forbidden] = float("-inf")
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

        # Advance the state machine.
        state.in_audio = (in_audio | (text == c.audio_start_token_id)) & ~forced_end
        state.stopped = state.stopped | (text == c.im_end_token_id)
        audio_step = (text == c.audio_start_token_id) | (text == self.slot_ids[0]) | (text == self.slot_ids[1])
        state.audio_len = torch.where(text == c.audio_end_token_id, 0, state.audio_len + audio_step.long())
        frame_row = (text == self.slot_ids[0]) | ((text == self.slot_ids[1]) & ~delaying)
        state.new_frames = state.new_frames + frame_row.long()
        starts_delay = (state.delay == NOT_DELAYING) & (text == self.slot_ids[1])
        delay = torch.where(starts_delay, 0, state.delay)
        delay = torch.where(delay != NOT_DELAYING, delay + 1, delay)
        state.delay = torch.where(delay > self.n_vq, NOT_DELAYING, delay)
        return torch.cat([text[:, None], codes], dim=1)

    def _results(self, prompts: list[Prompt], out: torch.Tensor, state: RowState) -> list[RowResult]:
        c = self.model.config
        out = out.cpu()
        results = []
        for row, prompt in enumerate(prompts):
            text = out[row, :, 0]
            ends = torch.nonzero(text == c.im_end_token_id)
            finished = bool(ends.numel())
            generated = out[row, : int(ends[0]) + 1] if finished else out[row]
            tail = self._open_block(prompt)
            runs = self.processor.frames_from_rows(tail, generated, prompt.prefix_frames)
            frames = runs[0] if runs else torch.zeros(0, c.n_vq, dtype=torch.long)
            results.append(RowResult(frames, runs, generated, finished, bool(state.forced_close[row])))
        return results

    def _open_block(self, prompt: Prompt) -> torch.Tensor:
        """Prompt rows of the audio block a continuation prompt ends inside (from <|audio_start|>)."""
        if not prompt.prefix_frames:
            return prompt.ids[:0]
        return prompt.ids[-(prompt.prefix_frames + 1) :]
