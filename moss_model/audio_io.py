"""Reading voice references: any common audio file to mono at the codec's rate and a normalized level.

WAV/FLAC/MP3/OGG go through soundfile (libsndfile); anything it cannot open (M4A/AAC, WMA,
OPUS-in-WebM, ...) through pydub, which runs FFmpeg. Channels are averaged to mono, the rate is
converted with torchaudio's windowed-sinc resampler (the released processor's resampler, same
defaults), and the level is scaled toward -20 dBFS RMS with the gain clamped to +-3 dB (the
released processor's `loudness_normalize`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from moss_model.codec.rates import DEFAULT_SAMPLE_RATE

TARGET_DBFS = -20.0
MAX_GAIN_DB = 3.0


class AudioLoadError(ValueError):
    """An audio file that cannot be used as a voice reference; the message names the file."""


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a file to float32 samples `[channels, frames]` in [-1, 1] and its sample rate."""
    path = Path(path)
    if not path.exists():
        raise AudioLoadError(f"audio file {path} does not exist")
    if not path.is_file():
        raise AudioLoadError(f"audio path {path} is not a file")
    try:
        data, rate = _read_soundfile(path)
    except Exception as sf_error:  # libsndfile cannot open this format: let FFmpeg try
        try:
            data, rate = _read_ffmpeg(path)
        except AudioLoadError:
            raise
        except Exception as ff_error:
            raise AudioLoadError(
                f"cannot read audio file {path}: soundfile says {_short(sf_error)}; "
                f"FFmpeg (via pydub) says {_short(ff_error)}"
            ) from ff_error
    if data.shape[1] == 0:
        raise AudioLoadError(f"audio file {path} holds no samples (empty or zero-length audio)")
    if not np.isfinite(data).all():
        raise AudioLoadError(f"audio file {path} holds NaN or infinite samples")
    return data, int(rate)


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # frames, channels
    return np.ascontiguousarray(data.T), rate


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    import shutil
    import warnings

    with warnings.catch_warnings():  # pydub imports the deprecated audioop module
        warnings.simplefilter("ignore", DeprecationWarning)
        from pydub import AudioSegment

    if shutil.which("ffmpeg") is None:
        raise AudioLoadError(
            f"cannot read audio file {path}: it needs FFmpeg (not found on PATH). "
            "Install it (apt-get install ffmpeg) or convert the file to WAV/FLAC."
        )
    segment = AudioSegment.from_file(str(path))
    channels, width = segment.channels, segment.sample_width
    samples = np.asarray(segment.get_array_of_samples())
    if samples.size == 0:
        return np.zeros((max(channels, 1), 0), dtype=np.float32), segment.frame_rate
    scale = float(1 << (8 * width - 1))
    data = (samples.astype(np.float32) / scale).reshape(-1, channels).T
    return np.ascontiguousarray(data), segment.frame_rate


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}".strip()


def to_mono(data: np.ndarray | torch.Tensor) -> torch.Tensor:
    """`[channels, frames]` (or `[frames]`) -> `[frames]` float32, channels averaged."""
    wav = torch.as_tensor(data, dtype=torch.float32)
    if wav.dim() == 1:
        return wav
    if wav.dim() != 2:
        raise ValueError(f"expected [channels, frames], got shape {tuple(wav.shape)}")
    return wav.mean(dim=0) if wav.shape[0] > 1 else wav[0]


def resample(wav: torch.Tensor, orig_rate: int, new_rate: int = DEFAULT_SAMPLE_RATE) -> torch.Tensor:
    """Band-limited (windowed-sinc, polyphase) rate conversion along the last axis."""
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return wav
    import torchaudio.functional as AF

    return AF.resample(wav, orig_freq=int(orig_rate), new_freq=int(new_rate))


def normalize_level(
    wav: torch.Tensor, target_dbfs: float = TARGET_DBFS, max_gain_db: float = MAX_GAIN_DB
) -> torch.Tensor:
    """Scale toward `target_dbfs` RMS, the gain clamped to +-`max_gain_db` dB."""
    wav = wav.to(torch.float32)
    if wav.numel() == 0:
        return wav
    current = 10.0 * math.log10(float(torch.mean(wav * wav)) + 1e-9)
    gain = max(-max_gain_db, min(target_dbfs - current, max_gain_db))
    return wav * (10.0 ** (gain / 20.0))


def load_audio(path: str | os.PathLike, sample_rate: int = DEFAULT_SAMPLE_RATE) -> torch.Tensor:
    """A file as mono float32 `[frames]` at `sample_rate` (no level change)."""
    data, rate = read_audio(path)
    return resample(to_mono(data), rate, sample_rate)


def load_reference_audio(
    path: str | os.PathLike, sample_rate: int = DEFAULT_SAMPLE_RATE, *, normalize: bool = True
) -> torch.Tensor:
    """A voice reference ready for the codec: mono float32 `[frames]` at `sample_rate`, level-normalized."""
    wav = load_audio(path, sample_rate)
    return normalize_level(wav) if normalize else wav
