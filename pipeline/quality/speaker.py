"""Speaker embeddings with Resemblyzer's pretrained voice encoder, batched.

The network and its weights are Resemblyzer's: a 3-layer LSTM over 40-band mel frames of 16 kHz
audio, a linear layer, ReLU, L2 norm. An utterance is cut into 1.6 s partials (160 frames, a new
one every ~0.77 s), each partial is embedded and the utterance embedding is the normalized mean of its partials. That is
``VoiceEncoder.embed_utterance``; here the partials of many segments go through the LSTM in one
batch.

The weights are read from ``weights/speaker_encoder.safetensors`` beside this module: the
package's tensors in float16 (embeddings within a cosine of 0.9999997 of the float32 original's),
written once by ``weights/make_speaker_weights.py`` from the module the package loads itself; no
pickle is read here. Resemblyzer is Apache-2.0; its license is in ``weights/LICENSE-resemblyzer``.
The package itself is not needed at run time. Its mel filterbank is computed here with
torchaudio, the same way librosa does. Its silence trimming
(a VAD) is left out: narrated segments carry little silence, and the pauses between them are
added later.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

ENCODER_SAMPLE_RATE = 16_000
MEL_BANDS = 40
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
PARTIAL_FRAMES = 160  # 1.6 s
PARTIALS_PER_SECOND = 1.3  # Resemblyzer's default rate
MIN_COVERAGE = 0.75  # a last partial less covered than this is dropped (unless it is the only one)
LEVEL_TARGET_DBFS = -30.0  # quiet audio is raised to this (never lowered), as Resemblyzer does
SILENT_RMS = 1e-4  # -80 dBFS: below this an utterance holds no voice and embeds as a zero vector
EMBEDDING_SIZE = 256
ENCODER_WEIGHTS = Path(__file__).resolve().parent / "weights" / "speaker_encoder.safetensors"


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(MEL_BANDS, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, EMBEDDING_SIZE)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:  # B, T, MEL_BANDS -> B, EMBEDDING_SIZE
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        # A partial that activates nothing (silence) has no direction: it stays zero, not NaN.
        return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)


def partial_starts(num_samples: int) -> list[int]:
    """Mel-frame offsets of an utterance's partials (Resemblyzer's ``compute_partial_slices``)."""
    n_frames = int(np.ceil((num_samples + 1) / HOP))
    step = int(np.round(ENCODER_SAMPLE_RATE / PARTIALS_PER_SECOND / HOP))
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    coverage = (num_samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts


class SpeakerEncoder:
    """``embed([audio, ...], sample_rate) -> [N, 256]`` unit vectors; silence (below -80 dBFS RMS)
    gives a zero vector, so its similarity to anything is 0.

    Audio is float mono numpy at any rate (resampled to 16 kHz here). Partials go through the
    LSTM in calls of exactly ``max_batch`` rows (the last padded with zeros), so every call has
    one shape and a segment's embedding does not depend, to the bit, on what it is batched with:
    the narrator's decisions must not depend on the schedule.
    """

    def __init__(self, device: str | torch.device = "cpu", weights: str | Path | None = None,
                 max_batch: int | None = None) -> None:
        self.device = torch.device(device)
        # Padding rows cost a CPU in full (8: ~0.006 CPU-s per audio-s for one short segment a call,
        # 32: ~0.018); a GPU runs them alongside the others and pays per call instead.
        self.max_batch = max_batch or (64 if self.device.type == "cuda" else 8)
        path = Path(weights) if weights is not None else ENCODER_WEIGHTS
        if path.suffix != ".safetensors" or not path.is_file():
            raise FileNotFoundError(f"speaker encoder weights: {path} is not a .safetensors file "
                                    "(pipeline/quality/weights/make_speaker_weights.py writes the default one)")
        self.model = _Encoder()
        self.model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})  # stored as float16
        self.model.eval().to(self.device)
        import torchaudio

        # librosa.feature.melspectrogram's defaults (Resemblyzer's front end): power spectrum,
        # Slaney mel scale and area normalization, centered frames padded with zeros.
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=ENCODER_SAMPLE_RATE, n_fft=WINDOW, hop_length=HOP, n_mels=MEL_BANDS,
            power=2.0, center=True, pad_mode="constant", norm="slaney", mel_scale="slaney",
        ).to(self.device)

    def prepare(self, audio: np.ndarray, sample_rate: int) -> torch.Tensor:
        """One utterance as 16 kHz float32, level raised toward -30 dBFS when quieter."""
        # On the encoder's device: on a GPU the resampling is off the CPU too (the narrator's checker
        # thread embeds every segment it decodes).
        wave = torch.as_tensor(np.asarray(audio, dtype=np.float32).reshape(-1)).to(self.device)
        if sample_rate != ENCODER_SAMPLE_RATE:
            import torchaudio.functional as AF

            wave = AF.resample(wave, sample_rate, ENCODER_SAMPLE_RATE)
        rms = float(wave.pow(2).mean().sqrt()) if wave.numel() else 0.0
        if rms > 0:
            gain_db = LEVEL_TARGET_DBFS - 20 * np.log10(rms)
            if gain_db > 0:
                wave = wave * float(10 ** (gain_db / 20))
        return wave

    @torch.inference_mode()
    def embed(self, audios: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        """Embeddings of many utterances at once: ``[len(audios), 256]`` float32."""
        partials: list[torch.Tensor] = []
        owner: list[int] = []
        silent = np.zeros(len(audios), dtype=bool)
        for number, audio in enumerate(audios):
            samples = np.asarray(audio, dtype=np.float32).reshape(-1)
            if samples.size == 0 or float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) < SILENT_RMS:
                silent[number] = True  # before ``prepare``, which would raise its level
                continue
            wave = self.prepare(samples, sample_rate)
            starts = partial_starts(wave.numel())
            needed = (starts[-1] + PARTIAL_FRAMES) * HOP
            wave = torch.nn.functional.pad(wave, (0, max(0, needed - wave.numel())))
            mel = self.mel(wave).T  # frames, MEL_BANDS
            for start in starts:
                partials.append(mel[start:start + PARTIAL_FRAMES])
                owner.append(number)
        if not partials:
            return np.zeros((len(audios), EMBEDDING_SIZE), dtype=np.float32)
        stacked = torch.stack(partials)  # P, PARTIAL_FRAMES, MEL_BANDS
        padded = -(-len(stacked) // self.max_batch) * self.max_batch
        stacked = torch.nn.functional.pad(stacked, (0, 0, 0, 0, 0, padded - len(stacked)))
        embedded = torch.cat([self.model(stacked[i:i + self.max_batch])
                              for i in range(0, padded, self.max_batch)])[:len(partials)]  # P, EMBEDDING_SIZE
        sums = torch.zeros(len(audios), EMBEDDING_SIZE, device=embedded.device)
        sums.index_add_(0, torch.tensor(owner, device=embedded.device), embedded)
        embeddings = unit(sums.cpu().numpy())
        embeddings[silent] = 0.0
        return embeddings


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.where(norms > 0, vectors / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Cosine of the angle between rows of ``a`` and ``b`` (broadcast); 0 where either is zero."""
    value = np.sum(unit(a) * unit(b), axis=-1)
    return float(value) if np.ndim(value) == 0 else value
