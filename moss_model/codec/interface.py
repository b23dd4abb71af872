"""What the rest of the project needs from an audio codec: waveforms <-> frames of codes.

`AudioCodec` is the contract the pipeline codes against (encode a voice reference, decode a
segment's codes, the rates to turn frames into samples and seconds); `MossAudioCodec` is the one
implementation. Shapes: waveforms `[B, N]` float, codes `[B, K, T]` long (K codebooks, T frames),
lengths `[B]`.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import torch


class EncodeResult(NamedTuple):
    codes: torch.Tensor  # B, K, T  (0 beyond each row's length)
    lengths: torch.Tensor  # B  frames


class DecodeResult(NamedTuple):
    audio: torch.Tensor  # B, N  float32 (0 beyond each row's length)
    lengths: torch.Tensor  # B  samples


@runtime_checkable
class AudioCodec(Protocol):
    """An audio codec as the pipeline uses it; all rates come from the codec's own config."""

    @property
    def sample_rate(self) -> int:
        """Audio samples per second of the waveforms it encodes and decodes."""
        ...

    @property
    def frame_rate(self) -> float:
        """Code frames per second (sample_rate / samples_per_frame)."""
        ...

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per code frame."""
        ...

    @property
    def num_codebooks(self) -> int:
        """Codebooks (K) of a full frame of codes."""
        ...

    @property
    def device(self) -> torch.device:
        """Where inputs should be put before encode/decode."""
        ...

    def encode(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None, n_codebooks: int | None = None
    ) -> EncodeResult:
        """Waveforms `[B, N]` at `sample_rate` -> codes `[B, n_codebooks, T]` and frames per row."""
        ...

    def decode(self, codes: torch.Tensor, lengths: torch.Tensor | None = None) -> DecodeResult:
        """Codes `[B, K, T]` -> audio `[B, T * samples_per_frame]` float32 and samples per row."""
        ...
