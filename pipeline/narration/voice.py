"""The narrator's voice: a reference recording (and maybe its transcript) turned into codes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import InputError

if TYPE_CHECKING:
    from moss_model.codec import AudioCodec

GENERATED_VOICE = "first-segment"  # no reference: the book's first segment becomes the reference


@dataclass(frozen=True)
class VoiceSpec:
    """What the driver knows of the voice before any model loads."""

    path: str | None
    text: str | None
    voice_id: str
    start_s: float = 0.0  # the window of the recording used (a long one is trimmed to its best part)
    end_s: float | None = None


@dataclass
class Voice:
    """The reference as the narrator uses it."""

    voice_id: str
    codes: np.ndarray | None  # frames, n_vq; None until the first segment supplies it
    text: str | None  # its transcript: enables continuation cloning


SILENT_DBFS = -50.0  # a reference whose loudest 50 ms stays below this holds no voice
MAX_REFERENCE_SECONDS = 30.0  # longer references are trimmed: the model is trained on short ones
TRIMMED_SECONDS = 20.0


def _frame_levels(mono: np.ndarray, rate: int, frame_s: float = 0.05) -> np.ndarray:
    """RMS level in dBFS of each 50 ms frame."""
    size = max(1, int(rate * frame_s))
    usable = mono[: len(mono) // size * size].reshape(-1, size) if len(mono) >= size else mono[None]
    rms = np.sqrt(np.mean(np.square(usable, dtype=np.float64), axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-10))


def best_window(levels: np.ndarray, frame_s: float, seconds: float) -> tuple[float, float]:
    """The `seconds`-long window (on frame bounds) with the most frames of speech (within 30 dB of
    the loudest frame); the earliest of equals."""
    width = int(round(seconds / frame_s))
    if len(levels) <= width:
        return 0.0, len(levels) * frame_s
    active = (levels > max(levels.max() - 30.0, SILENT_DBFS)).astype(np.int64)
    sums = np.convolve(active, np.ones(width, dtype=np.int64), mode="valid")
    start = int(np.argmax(sums))
    return start * frame_s, (start + width) * frame_s


def check_voice(path: str | None, text: str | None) -> VoiceSpec:
    """Validate the voice file (readable, audible, a usable length) and give it a stable id.

    A reference longer than MAX_REFERENCE_SECONDS is trimmed to its best TRIMMED_SECONDS window,
    with a notice; its transcript, which no longer matches, is then left out.
    """
    if path is None:
        return VoiceSpec(None, None, GENERATED_VOICE)
    from moss_model.audio_io import AudioLoadError, read_audio

    file = Path(path).expanduser()
    if file.is_dir():
        raise InputError(str(file), "", "the voice is a folder, not an audio file",
                         "pass voice=PATH to one wav, flac, mp3 or m4a recording inside it")
    if not file.is_file():
        raise InputError(str(file), "", "the voice file does not exist", "pass voice=PATH to a wav, flac, mp3 or m4a recording")
    try:
        data, rate = read_audio(file)
    except AudioLoadError as error:
        raise InputError(str(file), "", f"the voice file cannot be read ({error})",
                         "convert it to wav or flac (e.g. ffmpeg -i in.xxx out.wav)") from error
    seconds = data.shape[-1] / rate  # data is [channels, frames]
    if seconds < 1.0:
        raise InputError(str(file), "", f"the voice recording is only {seconds:.2f} s long",
                         "use a clean reference of 3 to 20 seconds")
    levels = _frame_levels(data.mean(axis=0), rate)
    if levels.max() < SILENT_DBFS:
        raise InputError(str(file), "", f"the voice recording is silent (its loudest moment is {levels.max():.0f} dBFS)",
                         "record or pick a reference where the narrator speaks, 3 to 20 seconds long")
    if text is not None and not str(text).strip():
        text = None
    start, end = 0.0, None
    if seconds > MAX_REFERENCE_SECONDS:
        start, end = best_window(levels, 0.05, TRIMMED_SECONDS)
        dropped = " (its transcript no longer matches, so it is not used)" if text else ""
        print(f"notice: the voice recording {file} is {seconds:.0f} s long; the {end - start:.0f} s from "
              f"{start:.1f} s to {end:.1f} s with the most speech are used as the reference{dropped}. "
              f"Give a 3 to 20 s recording to choose it yourself.")
        text = None
    digest = hashlib.sha256(file.read_bytes())
    digest.update(("\0" + (text or "")).encode())
    if end is not None:
        digest.update(f"\0{start:.3f}-{end:.3f}".encode())
    return VoiceSpec(str(file), text, "ref-" + digest.hexdigest()[:16], start, end)


def encode_voice(spec: VoiceSpec, codec: AudioCodec, n_vq: int) -> Voice:
    """Load, mono, at the codec's rate, level-normalize and encode the reference with the codec."""
    if spec.path is None:
        return Voice(spec.voice_id, None, None)
    import torch

    wave = voice_wave(spec, codec.sample_rate).to(codec.device, torch.float32)
    result = codec.encode(wave[None], n_codebooks=n_vq)
    frames = int(result.lengths[0])
    codes = result.codes[0, :, :frames].T.cpu().numpy().astype(np.int16)  # frames, n_vq
    return Voice(spec.voice_id, codes, spec.text)


def voice_wave(spec: VoiceSpec, sample_rate: int):
    """The reference recording as the codec takes it: mono float32 [samples] at `sample_rate` (the
    codec's), level-normalized, trimmed to its window; a URL (object storage) is fetched on this node."""
    from moss_model.audio_io import load_reference_audio
    from pipeline import storage

    assert spec.path is not None
    with storage.local_copy(spec.path) as path:
        if spec.end_s is None:
            return load_reference_audio(path, sample_rate)
        return load_reference_audio_window(replace(spec, path=str(path)), sample_rate)


def load_reference_audio_window(spec: VoiceSpec, sample_rate: int):
    """The reference's trimmed window at `sample_rate`, level-normalized on its own (mono)."""
    from moss_model.audio_io import load_audio, normalize_level

    assert spec.path is not None
    wave = load_audio(spec.path, sample_rate)
    start = int(spec.start_s * sample_rate)
    end = int(spec.end_s * sample_rate) if spec.end_s is not None else None
    return normalize_level(wave[start:end])
