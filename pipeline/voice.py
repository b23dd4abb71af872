"""The narrator's voice: a reference recording (and maybe its transcript) turned into codes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import InputError

GENERATED_VOICE = "first-segment"  # no reference: the book's first segment becomes the reference


@dataclass(frozen=True)
class VoiceSpec:
    """What the driver knows of the voice before any model loads."""

    path: str | None
    text: str | None
    voice_id: str


@dataclass
class Voice:
    """The reference as the narrator uses it."""

    voice_id: str
    codes: np.ndarray | None  # frames, n_vq; None until the first segment supplies it
    text: str | None  # its transcript: enables continuation cloning


def check_voice(path: str | None, text: str | None) -> VoiceSpec:
    """Validate the voice file (readable, audible length) and give it a stable id."""
    if path is None:
        return VoiceSpec(None, None, GENERATED_VOICE)
    from moss_model.audio_io import AudioLoadError, read_audio

    file = Path(path).expanduser()
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
    if text is not None and not str(text).strip():
        text = None
    digest = hashlib.sha256(file.read_bytes())
    digest.update(("\0" + (text or "")).encode())
    return VoiceSpec(str(file), text, "ref-" + digest.hexdigest()[:16])


def encode_voice(spec: VoiceSpec, codec, n_vq: int) -> Voice:
    """Load, mono, 24 kHz, level-normalize and encode the reference with the codec."""
    if spec.path is None:
        return Voice(spec.voice_id, None, None)
    import torch

    from moss_model.audio_io import load_reference_audio

    wave = load_reference_audio(spec.path).to(codec.device, torch.float32)
    result = codec.encode(wave[None], n_codebooks=n_vq)
    frames = int(result.lengths[0])
    codes = result.codes[0, :, :frames].T.cpu().numpy().astype(np.int16)  # frames, n_vq
    return Voice(spec.voice_id, codes, spec.text)
