"""Speech recognition for WER: one interface, PocketSphinx by default, Whisper from a local folder.

An ``ASR`` transcribes a batch of segments of one language. A language it cannot hear gives
None ("not measured"), never an error: a Chinese segment in an English book simply has no WER.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

ASR_SAMPLE_RATE = 16_000


class ASR(Protocol):
    """``transcribe(audios, sample_rate, language)``: one transcript per audio, or None when the
    language is not one this recognizer hears."""

    name: str

    def transcribe(self, audio_batch: Sequence[np.ndarray], sample_rate: int, language: str) -> list[str] | None: ...


def base_language(language: str | None) -> str:
    """"en-US" / "en_GB" / "EN" -> "en"."""
    return (language or "").replace("_", "-").split("-")[0].lower()


def to_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    import torch
    import torchaudio.functional as AF

    wave = torch.as_tensor(np.asarray(audio, dtype=np.float32).reshape(-1))
    if sample_rate != ASR_SAMPLE_RATE and wave.numel():
        wave = AF.resample(wave, sample_rate, ASR_SAMPLE_RATE)
    return wave.numpy()


def _pcm16(audio: np.ndarray, sample_rate: int) -> bytes:
    wave = to_16k(audio, sample_rate)
    return (np.clip(wave, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def decode_utterances(decoder, pcms: Sequence[bytes]) -> list[str]:
    """Each utterance alone (full_utt: its own normalization, so a transcript does not depend on
    what the decoder heard before)."""
    transcripts = []
    for pcm in pcms:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        transcripts.append(hypothesis.hypstr if hypothesis is not None else "")
    return transcripts


class _Worker:
    """A ``pipeline.quality.sphinx_worker`` process and its pipes."""

    def __init__(self, config: dict) -> None:
        import json
        import os
        import subprocess
        import sys

        root = str(Path(__file__).resolve().parents[2])  # the folder holding the pipeline package
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        self.process = subprocess.Popen([sys.executable, "-m", "pipeline.quality.sphinx_worker", json.dumps(config)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def transcribe(self, pcms: Sequence[bytes]) -> list[str]:
        import struct

        from pipeline.quality.sphinx_worker import read_exact

        stdin, stdout = self.process.stdin, self.process.stdout
        if stdin is None or stdout is None:  # both are pipes (Popen with PIPE in __init__)
            raise RuntimeError("the PocketSphinx worker process has no stdin/stdout pipe")
        try:
            stdin.write(struct.pack("<I", len(pcms)) + b"".join(struct.pack("<Q", len(p)) + p for p in pcms))
            stdin.flush()
            texts = []
            for _ in pcms:
                header = read_exact(stdout, 4)
                body = None if header is None else read_exact(stdout, struct.unpack("<I", header)[0])
                if body is None:
                    raise EOFError
                texts.append(body.decode("utf-8"))
        except (BrokenPipeError, EOFError) as error:
            raise RuntimeError(f"the PocketSphinx worker process ended (exit code {self.process.poll()})") from error
        return texts

    def close(self) -> None:
        if self.process.poll() is None:
            if self.process.stdin is not None:  # always a pipe (Popen with PIPE in __init__)
                self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except Exception:
                self.process.kill()


class PocketSphinxASR:
    """CMU PocketSphinx with the US English acoustic model, dictionary and language model that ship
    in its wheel (nothing is downloaded). English only; segments one after another (the decoder
    has no batch).

    By default the decoder runs in a worker process of its own: PocketSphinx holds Python's GIL
    for a whole utterance (seconds), which in the narrator's process would stop the engine's step
    loop meanwhile. ``in_process=True`` decodes in this process (scripts, tests)."""

    name = "pocketsphinx"
    languages = ("en",)

    def __init__(self, in_process: bool = False, **config: object) -> None:
        import threading

        # ``config``: PocketSphinx options (e.g. maxhmmpf=3000 to prune harder); logging off.
        self.config = dict(config)
        self._decoder = None
        self._worker: _Worker | None = None
        self._lock = threading.Lock()
        if in_process:
            from pocketsphinx import Decoder

            self._decoder = Decoder(loglevel="ERROR", **self.config)
        else:
            import pocketsphinx  # noqa: F401  (fail here, not in the worker, when it is missing)

    def close(self) -> None:
        """End the worker process (a later transcription starts another)."""
        with self._lock:
            if self._worker is not None:
                self._worker.close()
                self._worker = None

    def __del__(self) -> None:
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.close()

    def transcribe(self, audio_batch: Sequence[np.ndarray], sample_rate: int, language: str) -> list[str] | None:
        if base_language(language) not in self.languages:
            return None
        pcms = [_pcm16(audio, sample_rate) for audio in audio_batch]
        if self._decoder is not None:
            return decode_utterances(self._decoder, pcms)
        with self._lock:
            if self._worker is None:
                self._worker = _Worker(self.config)
            return self._worker.transcribe(pcms)


class WhisperASR:
    """A Whisper-family model (transformers ``WhisperForConditionalGeneration``) from a local folder
    holding ``config.json``, ``*.safetensors`` and the processor files. Never downloads: a folder
    without safetensors weights is an error naming what is missing. English-only checkpoints
    (``*.en``) hear English only; multilingual ones the languages their generation config lists."""

    name = "whisper"

    def __init__(self, path: str | Path, device: str = "cpu", max_batch: int = 16, max_new_tokens: int = 200) -> None:
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"Whisper model folder {path} does not exist (give a local folder; nothing is downloaded)")
        if not any(path.glob("*.safetensors")):
            raise FileNotFoundError(f"Whisper model folder {path} holds no *.safetensors weights (only safetensors are loaded)")
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.processor = WhisperProcessor.from_pretrained(path, local_files_only=True)
        self.model = WhisperForConditionalGeneration.from_pretrained(path, local_files_only=True, use_safetensors=True)
        # transformers declares `to` as functools.wraps(torch.nn.Module.to), which pyright calls unbound.
        self.model.eval().to(device)  # pyright: ignore[reportArgumentType]
        self.device = device
        self.max_batch = max_batch
        # The forced prompt (start, language, task, no timestamps) shares the decoder's positions.
        self.max_new_tokens = min(max_new_tokens, self.model.config.max_target_positions - 5)
        # Multilingual checkpoints say so in their generation config and list their language tokens
        # there; English-only ones (*.en) share the tokenizer but take no language.
        generation = self.model.generation_config
        self.multilingual = bool(getattr(generation, "is_multilingual", False))
        tokens = getattr(generation, "lang_to_id", None) or {}
        self.languages = {base_language(token.strip("<|>")) for token in tokens} if self.multilingual else {"en"}

    def transcribe(self, audio_batch: Sequence[np.ndarray], sample_rate: int, language: str) -> list[str] | None:
        import torch

        language = base_language(language)
        if language not in self.languages:
            return None
        transcripts: list[str] = []
        for first in range(0, len(audio_batch), self.max_batch):
            waves = [to_16k(a, sample_rate) for a in audio_batch[first:first + self.max_batch]]
            features = self.processor.feature_extractor(waves, sampling_rate=ASR_SAMPLE_RATE, return_tensors="pt")
            options: dict[str, Any] = {"language": language, "task": "transcribe"} if self.multilingual else {}
            with torch.inference_mode():
                ids = self.model.generate(features.input_features.to(self.device, self.model.dtype),
                                          max_new_tokens=self.max_new_tokens, **options)
            transcripts += [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]
        return transcripts


def load_asr(kind: str = "pocketsphinx", path: str | Path | None = None, device: str = "cpu") -> ASR:
    """The recognizer named by ``kind``: "pocketsphinx" (in a worker process), or "whisper" with
    ``path`` its local folder."""
    if kind == "pocketsphinx":
        return PocketSphinxASR()
    if kind == "whisper":
        if path is None:
            raise ValueError("asr 'whisper' needs the path of a local model folder")
        return WhisperASR(path, device=device)
    raise ValueError(f"unknown asr {kind!r}; choose pocketsphinx or whisper")
