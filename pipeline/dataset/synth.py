"""Synthesize a batch of work items on one model + codec (one per actor): the engine's rows kept
full, each utterance checked, retried with a new seed, decoded, optionally loudness-normalized,
encoded as FLAC and stored under its key at once.

Seeds come from keys and engine rows do not depend on what shares the pool, so a key gives the
same bytes in any batch, on any actor, in any run.
"""

from __future__ import annotations

import io
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import soundfile
import torch

from moss_model.codec import AudioCodec
from moss_model.engine import Engine, RowResult
from moss_model.processor import SpeechRequest
from pipeline.dataset.results import ResultStore, Utterance
from pipeline.finishing.loudness import LimiterOptions, normalize_loudness
from pipeline.narration.checks import segment_checks
from pipeline.narration.narrate import PROMPT_TEXT_TOKENS, NarrationOptions, join_prefix_text, segment_seed
from pipeline.narration.voice import Voice, VoiceSpec, encode_voice


@dataclass(frozen=True)
class SynthOptions:
    narration: NarrationOptions = field(default_factory=NarrationOptions)  # decoding, checks, attempts, capacity
    loudness_lufs: float | None = None  # per-utterance loudness target; None keeps the model's level
    true_peak_db: float = -1.0


@dataclass
class _State:
    item: dict
    attempt: int = 0
    seed: int = 0


class DatasetSynthesizer:
    def __init__(self, tts, codec: AudioCodec, voices: dict[str, VoiceSpec], options: SynthOptions,
                 store: ResultStore) -> None:
        self.tts = tts
        self.codec = codec
        self.options = options
        self.store = store
        n_vq = tts.config.n_vq
        # Every voice once, here: each actor encodes each voice once.
        self.voices: dict[str, Voice] = {name: encode_voice(spec, codec, n_vq) for name, spec in voices.items()}
        self._references = {name: None if v.codes is None else torch.from_numpy(v.codes.astype(np.int64))
                            for name, v in self.voices.items()}
        longest = max((0 if v.codes is None else v.codes.shape[0] for v in self.voices.values()), default=0)
        generated = options.narration.max_frames_per_segment + n_vq + 32
        # reference block + the same codes again as the continuation prefix + the new audio
        max_row_tokens = PROMPT_TEXT_TOKENS + 2 * (longest + n_vq + 2) + generated
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finish")
        self.engine = Engine(tts.model, tts.processor, options.narration.capacity, max_row_tokens=max_row_tokens,
                             admission="longest_first")

    def synthesize(self, items: list[dict]) -> list[dict]:
        """Every item to a stored utterance (or found stored); small records back, in the items' order.

        A finished row is decoded, checked, encoded and stored on a second thread while the engine
        keeps stepping the others; a row that fails its checks comes back and is submitted again.
        """
        started = time.perf_counter()
        before = (self.engine.stats.prefill_seconds, self.engine.stats.step_seconds)
        out: dict[str, dict] = {}
        requests: dict[int, _State] = {}
        finishing: list[Future] = []
        for item in items:
            if item["key"] in out or self.store.has(item["key"]):
                out.setdefault(item["key"], {"reused": True, "frames": 0, "attempts": 0, "flagged": False})
                continue
            out[item["key"]] = {}
            state = _State(item)
            requests[self._submit(state)] = state

        def collect(wait: bool) -> None:
            for future in [f for f in finishing if wait or f.done()]:
                finishing.remove(future)
                state, record = future.result()
                if record is None:
                    requests[self._submit(state)] = state  # again, with the next attempt's seed
                else:
                    out[state.item["key"]] = record

        while requests or finishing:
            if not requests:
                collect(wait=True)
                continue
            for finished in self.engine.step():
                state = requests.pop(finished.request_id)
                finishing.append(self._finisher.submit(self._accept, state, finished.result))
            collect(wait=False)
        stats = self.engine.stats
        model_seconds = stats.prefill_seconds + stats.step_seconds - sum(before)
        wall = time.perf_counter() - started
        results = []
        for position, item in enumerate(items):
            record = out[item["key"]]
            frames = int(record["frames"])
            # the batch's times go on its first row, so sums over rows are the actor's totals
            results.append({"key": item["key"], "shard": int(item["shard"]), "reused": bool(record["reused"]),
                            "frames": frames, "audio_seconds": frames / self.codec.frame_rate,
                            "attempts": int(record["attempts"]),
                            "flagged": bool(record["flagged"]), "model_seconds": model_seconds if position == 0 else 0.0,
                            "wall_seconds": wall if position == 0 else 0.0})
        return results

    def request(self, item: dict) -> SpeechRequest:
        """A row's prompt: the voice as reference and, when its transcript is known, as the prefix
        the row continues (continuation cloning), like a chapter's first segment."""
        voice = self.voices[item["voice"]]
        reference = self._references[item["voice"]]
        tokens = item.get("tokens")
        tokens = None if tokens is None or tokens != tokens else int(tokens)
        text = item["normalized_text"]
        if reference is not None and voice.text:  # reference: None exactly when voice.codes is
            return SpeechRequest(text=text, reference=[reference], prefix_codes=reference,
                                 prefix_text=join_prefix_text(voice.text, text), tokens=tokens)
        return SpeechRequest(text=text, reference=None if reference is None else [reference], tokens=tokens)

    def _submit(self, state: _State) -> int:
        state.seed = segment_seed(state.item["key"], state.attempt)
        prompt = self.tts.processor.build_prompt(self.request(state.item))
        limit = self.options.narration.frame_limit(int(state.item["est_frames"]))
        return self.engine.submit(prompt, state.seed, self.options.narration.decoding, limit)

    def _accept(self, state: _State, result: RowResult) -> tuple[_State, dict | None]:
        """Store a row that passes its checks or has no attempts left (flagged); None: try again.
        Runs on the finishing thread."""
        options = self.options.narration
        frames = result.frames
        audio = self._decode(frames)
        checks = row_checks(result, audio, int(state.item["est_frames"]), options)
        state.attempt += 1
        if checks and state.attempt < options.max_attempts:
            return state, None
        sample_rate = self.codec.sample_rate
        lufs = None
        if self.options.loudness_lufs is not None and audio.size:
            leveled = normalize_loudness(audio, sample_rate, self.options.loudness_lufs,
                                         LimiterOptions(ceiling_db=self.options.true_peak_db))
            audio, lufs = leveled.audio, leveled.output_lufs
            lufs = lufs if np.isfinite(lufs) else None
        codes = frames.numpy().astype("<i2")
        self.store.put(Utterance(
            key=state.item["key"], flac=flac_bytes(audio, sample_rate), sample_rate=sample_rate,
            num_samples=int(audio.shape[0]), seed=state.seed, attempts=state.attempt, flags=checks,
            frames=int(frames.shape[0]), codes=codes.tobytes(), n_vq=int(codes.shape[1]), loudness_lufs=lufs,
        ))
        return state, {"reused": False, "frames": int(frames.shape[0]), "attempts": state.attempt,
                       "flagged": bool(checks)}

    def _decode(self, frames: torch.Tensor) -> np.ndarray:
        """One row alone (a batch's padding would make the audio depend on its neighbours)."""
        if frames.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        with torch.inference_mode():
            audio = self.codec.decode(frames.T[None].to(self.codec.device)).audio[0]
        return audio.float().cpu().numpy()


def row_checks(result: RowResult, audio: np.ndarray, est_frames: int, options: NarrationOptions) -> list[str]:
    """Reasons to regenerate a row (empty when it is fine): the narrator's checks, on the decoded audio."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return segment_checks(result, est_frames, 20 * np.log10(max(rms, 1e-10)), options)


def flac_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(audio, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()
