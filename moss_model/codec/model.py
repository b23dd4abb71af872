"""The MOSS audio codec (MOSS-Audio-Tokenizer): mono audio <-> frames of codes (24 kHz <-> 12.5 Hz released).

Encoder: patch the waveform into 240-sample steps, causal transformer stages separated by 2x
patch merges down to 12.5 Hz; a residual quantizer (32 codebooks of 1024 on the released model)
turns each frame into codes. Decoder: codes back to vectors, transformer stages separated by 2x
patch splits, and a final 240-sample unpatch.

Shapes: waveforms `[B, N]` float, codes `[B, K, T]` long (K codebooks, T frames), lengths `[B]`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from moss_model.checkpoint import CONFIG_FILE, load_model, resolve_checkpoint, save_weights
from moss_model.codec.config import CodecConfig
from moss_model.codec.interface import DecodeResult, EncodeResult
from moss_model.codec.network import CodecNetwork
from moss_model.codec.streaming import PartialFrame, StreamingDecoder, StreamingEncoder


class MossAudioCodec(CodecNetwork):
    """The codec: loading and saving, one-shot `encode`/`decode`, streaming (implements `AudioCodec`)."""

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        dtype: torch.dtype | None = None,
        device: str | torch.device = "cpu",
    ) -> MossAudioCodec:
        """Load from a local folder or a hub id (config.json + safetensors, strict key/shape check)."""
        folder = resolve_checkpoint(name_or_path, revision)
        config = CodecConfig.from_file(folder / CONFIG_FILE)
        return load_model(lambda: cls(config), folder, dtype=dtype, device=device)

    def save_pretrained(self, folder: str | os.PathLike, max_shard_bytes: int = 4 << 30) -> Path:
        import json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n", encoding="utf-8")
        save_weights(self, folder, max_shard_bytes=max_shard_bytes)
        return folder

    # ------------------------------------------------------------------ public API
    def encode(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor | None = None,
        n_codebooks: int | None = None,
        *,
        chunk_frames: int | None = None,
        partial_frame: PartialFrame = "drop",
    ) -> EncodeResult:
        """Waveforms `[B, N]` (at `sample_rate`, zero-padded rows; `[N]` and `[B, 1, N]` also accepted) -> codes.

        `lengths` are the valid samples of each row (default N). With `spf = samples_per_frame`
        (1920 released), a row's code length is `length // spf` (partial_frame="drop", as the
        released model reports it) or `ceil(length / spf)` ("pad": the last partial frame is
        zero-padded and kept). Samples past
        a row's length are ignored, so a row's codes do not depend on its neighbours or padding.
        The input is processed in passes of `chunk_frames` frames (default: one attention context)
        with the attention state carried over, which gives the same codes as a single pass.
        """
        waveforms = self.check_waveforms(waveforms)
        B, N = waveforms.shape
        samples = self.check_lengths(lengths, B, N, "samples")
        spf = self.samples_per_frame
        if partial_frame == "drop":
            code_lengths = torch.div(samples, spf, rounding_mode="floor")
        elif partial_frame == "pad":
            code_lengths = torch.div(samples + spf - 1, spf, rounding_mode="floor")
        else:
            raise ValueError(f"partial_frame must be 'drop' or 'pad', got {partial_frame!r}")
        frames = int(code_lengths.max()) if B else 0
        if B and int(samples.min()) < N:
            waveforms = waveforms.clone()
            for row, n in enumerate(samples.tolist()):
                waveforms[row, n:] = 0  # padding content must not reach a kept partial frame
        if frames * spf > N:
            waveforms = torch.nn.functional.pad(waveforms, (0, frames * spf - N))
        encoder = StreamingEncoder(self, B, n_codebooks, max_chunk_frames=chunk_frames)
        codes = encoder.push(waveforms[:, : frames * spf])
        valid = torch.arange(frames, device=codes.device) < code_lengths.to(codes.device).view(-1, 1)
        codes = codes * valid.unsqueeze(1)
        return EncodeResult(codes, code_lengths.to(codes.device))

    def decode(
        self,
        codes: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        chunk_frames: int | None = None,
    ) -> DecodeResult:
        """Codes `[B, K, T]` (`[K, T]` for one row; K <= num_codebooks) -> audio `[B, T * samples_per_frame]`.

        `lengths` are the valid frames of each row (default T); codes past them may hold anything
        (e.g. the delay model's pad code) and the audio past `lengths * samples_per_frame` is zero.
        """
        if codes.dim() == 2:
            codes = codes.unsqueeze(0)
        if codes.dim() != 3:
            raise ValueError(f"codes must be [B, K, T] (or [K, T]), got shape {tuple(codes.shape)}")
        codes, frames = self.mask_codes(codes, lengths)
        audio = StreamingDecoder(self, codes.shape[0], max_chunk_frames=chunk_frames).push(codes)
        self.silence_past(audio, frames)
        return DecodeResult(audio, frames * self.samples_per_frame)

    def streaming_decoder(self, batch_size: int = 1, **kwargs) -> StreamingDecoder:
        return StreamingDecoder(self, batch_size, **kwargs)

    def streaming_encoder(self, batch_size: int = 1, n_codebooks: int | None = None, **kwargs) -> StreamingEncoder:
        return StreamingEncoder(self, batch_size, n_codebooks, **kwargs)


def load_codec(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> MossAudioCodec:
    """Load the codec from a local folder or a hub id, e.g. "OpenMOSS-Team/MOSS-Audio-Tokenizer"."""
    return MossAudioCodec.from_pretrained(name_or_path, revision=revision, dtype=dtype, device=device)
