"""The MOSS audio codec (MOSS-Audio-Tokenizer): 24 kHz mono audio <-> 12.5 Hz frames of codes.

Encoder: patch the waveform into 240-sample steps, causal transformer stages separated by 2x
patch merges down to 12.5 Hz; a residual quantizer (32 codebooks of 1024 on the released model)
turns each frame into codes. Decoder: codes back to vectors, transformer stages separated by 2x
patch splits, and a final 240-sample unpatch.

Shapes: waveforms `[B, N]` float, codes `[B, K, T]` long (K codebooks, T frames), lengths `[B]`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from moss_model.checkpoint import CONFIG_FILE, load_model, resolve_checkpoint, save_weights
from moss_model.codec.config import CodecConfig, PatchStage
from moss_model.codec.modules import Patch, ResidualQuantizer, StageState, TransformerStack
from moss_model.codec.streaming import PartialFrame, StreamingDecoder, StreamingEncoder


class EncodeResult(NamedTuple):
    codes: torch.Tensor  # B, K, T  (0 beyond each row's length)
    lengths: torch.Tensor  # B  frames


class DecodeResult(NamedTuple):
    audio: torch.Tensor  # B, N  float32 (0 beyond each row's length)
    lengths: torch.Tensor  # B  samples


class MossAudioCodec(nn.Module):
    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = nn.ModuleList(
            Patch(s.patch_size, down=True) if isinstance(s, PatchStage) else TransformerStack(s, ctx)
            for s, ctx in zip(config.encoder, config.encoder_contexts())
        )
        self.quantizer = ResidualQuantizer(config.quantizer)
        self.decoder = nn.ModuleList(
            Patch(s.patch_size, down=False) if isinstance(s, PatchStage) else TransformerStack(s, ctx)
            for s, ctx in zip(config.decoder, config.decoder_contexts())
        )

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
        model = load_model(lambda: cls(config), folder, dtype=dtype, device=device)
        assert isinstance(model, MossAudioCodec)
        return model

    def save_pretrained(self, folder: str | os.PathLike, max_shard_bytes: int = 4 << 30) -> Path:
        import json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n", encoding="utf-8")
        save_weights(self, folder, max_shard_bytes=max_shard_bytes)
        return folder

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.quantizer.quantizers[0].codebook.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.quantizer.quantizers[0].codebook.weight.dtype

    @property
    def sampling_rate(self) -> int:
        return self.config.sampling_rate

    @property
    def samples_per_frame(self) -> int:
        return self.config.samples_per_frame

    @property
    def default_chunk_frames(self) -> int:
        """Frames per pass when none is given: one attention context (10 s on the released codec)."""
        return self.config.context_frames

    def _stage_dtype(self) -> torch.dtype:
        for module in (*self.encoder, *self.decoder):
            if isinstance(module, TransformerStack):
                return module.transformer.layers[0].linear1.weight.dtype if module.transformer.layers else self.dtype
        return self.dtype

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
        """Waveforms `[B, N]` (24 kHz, zero-padded rows; `[N]` and `[B, 1, N]` also accepted) -> codes.

        `lengths` are the valid samples of each row (default N). A row's code length is
        `length // 1920` (partial_frame="drop", as the released model reports it) or
        `ceil(length / 1920)` ("pad": the last partial frame is zero-padded and kept). Samples past
        a row's length are ignored, so a row's codes do not depend on its neighbours or padding.
        The input is processed in passes of `chunk_frames` frames (default: one attention context)
        with the attention state carried over, which gives the same codes as a single pass.
        """
        waveforms = self._check_waveforms(waveforms)
        B, N = waveforms.shape
        lengths = self._check_lengths(lengths, B, N, "samples")
        spf = self.samples_per_frame
        if partial_frame == "drop":
            code_lengths = torch.div(lengths, spf, rounding_mode="floor")
        elif partial_frame == "pad":
            code_lengths = torch.div(lengths + spf - 1, spf, rounding_mode="floor")
        else:
            raise ValueError(f"partial_frame must be 'drop' or 'pad', got {partial_frame!r}")
        frames = int(code_lengths.max()) if B else 0
        if B and int(lengths.min()) < N:
            waveforms = waveforms.clone()
            for row, n in enumerate(lengths.tolist()):
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
        """Codes `[B, K, T]` (`[K, T]` for one row; K <= num_quantizers) -> audio `[B, T * 1920]`.

        `lengths` are the valid frames of each row (default T); codes past them may hold anything
        (e.g. the delay model's pad code) and the audio past `lengths * 1920` is zero.
        """
        if codes.dim() == 2:
            codes = codes.unsqueeze(0)
        if codes.dim() != 3:
            raise ValueError(f"codes must be [B, K, T] (or [K, T]), got shape {tuple(codes.shape)}")
        codes, lengths = self._mask_codes(codes, lengths)
        audio = StreamingDecoder(self, codes.shape[0], max_chunk_frames=chunk_frames).push(codes)
        self._silence_past(audio, lengths)
        return DecodeResult(audio, lengths * self.samples_per_frame)

    def streaming_decoder(self, batch_size: int = 1, **kwargs) -> StreamingDecoder:
        return StreamingDecoder(self, batch_size, **kwargs)

    def streaming_encoder(self, batch_size: int = 1, n_codebooks: int | None = None, **kwargs) -> StreamingEncoder:
        return StreamingEncoder(self, batch_size, n_codebooks, **kwargs)

    # ------------------------------------------------------------------ one pass over whole frames
    def init_encoder_states(self) -> list[StageState | None]:
        return [m.init_state() if isinstance(m, TransformerStack) else None for m in self.encoder]

    def init_decoder_states(self) -> list[StageState | None]:
        return [m.init_state() if isinstance(m, TransformerStack) else None for m in self.decoder]

    def _encode_frames(self, wave: torch.Tensor, states: list[StageState | None] | None = None) -> torch.Tensor:
        """wave [B, F * 1920] -> encoder output [B, F, D]; `states` (updated in place) continue a stream."""
        x = wave.to(self._stage_dtype()).unsqueeze(-1)  # B, N, 1
        for i, module in enumerate(self.encoder):
            if isinstance(module, TransformerStack):
                x, new_state = module(x, None if states is None else states[i])
                if states is not None:
                    states[i] = new_state
            else:
                x = module(x)
        return x

    def _decode_frames(self, codes: torch.Tensor, states: list[StageState | None] | None = None) -> torch.Tensor:
        """codes [B, K, F] -> audio [B, F * 1920] float32; `states` (updated in place) continue a stream."""
        x = self.quantizer.decode(codes).to(self._stage_dtype())  # B, F, D
        for i, module in enumerate(self.decoder):
            if isinstance(module, TransformerStack):
                x, new_state = module(x, None if states is None else states[i])
                if states is not None:
                    states[i] = new_state
            else:
                x = module(x)
        return x.squeeze(-1).float()

    # ------------------------------------------------------------------ checks
    def _check_waveforms(self, waveforms: torch.Tensor) -> torch.Tensor:
        if not isinstance(waveforms, torch.Tensor):
            raise TypeError(f"waveforms must be a torch.Tensor, got {type(waveforms).__name__}")
        if waveforms.dim() == 1:
            waveforms = waveforms.unsqueeze(0)
        elif waveforms.dim() == 3 and waveforms.shape[1] == 1:
            waveforms = waveforms[:, 0]
        if waveforms.dim() != 2:
            raise ValueError(f"waveforms must be mono [B, N] (or [N], [B, 1, N]), got shape {tuple(waveforms.shape)}")
        if not waveforms.is_floating_point():
            raise TypeError(f"waveforms must be floating point, got {waveforms.dtype}")
        return waveforms.to(device=self.device, dtype=torch.float32)

    def _check_lengths(self, lengths: torch.Tensor | None, batch: int, size: int, unit: str) -> torch.Tensor:
        if lengths is None:
            return torch.full((batch,), size, dtype=torch.long, device=self.device)
        lengths = torch.as_tensor(lengths, dtype=torch.long, device=self.device).reshape(-1)
        if lengths.numel() != batch:
            raise ValueError(f"lengths has {lengths.numel()} entries for a batch of {batch}")
        if batch and (int(lengths.min()) < 0 or int(lengths.max()) > size):
            raise ValueError(f"lengths must lie in [0, {size}] {unit}, got {lengths.tolist()}")
        return lengths

    def _mask_codes(self, codes: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes past each row's length set to 0 (any value may sit there, e.g. a pad code)."""
        if codes.dim() != 3:
            raise ValueError(f"codes must be [B, K, T], got shape {tuple(codes.shape)}")
        B, _, T = codes.shape
        lengths = self._check_lengths(lengths, B, T, "frames").to(codes.device)
        valid = torch.arange(T, device=codes.device) < lengths.view(-1, 1)  # B, T
        return torch.where(valid.unsqueeze(1), codes, torch.zeros_like(codes)), lengths

    def _silence_past(self, audio: torch.Tensor, lengths: torch.Tensor) -> None:
        """Zero (in place) each row's audio past `lengths` frames."""
        spf = self.samples_per_frame
        for row, frames in enumerate(lengths.tolist()):
            audio[row, frames * spf :] = 0

    def _check_n_codebooks(self, n_codebooks: int | None) -> int:
        total = self.config.num_quantizers
        if n_codebooks is None:
            return total
        if not 1 <= int(n_codebooks) <= total:
            raise ValueError(f"n_codebooks must be in [1, {total}], got {n_codebooks}")
        return int(n_codebooks)

    def _check_codes(self, codes: torch.Tensor, batch_size: int) -> torch.Tensor:
        if codes.dim() != 3:
            raise ValueError(f"codes must be [B, K, T], got shape {tuple(codes.shape)}")
        B, K, _ = codes.shape
        if B != batch_size:
            raise ValueError(f"expected a batch of {batch_size} rows, got {B}")
        if not 1 <= K <= self.config.num_quantizers:
            raise ValueError(f"codes have {K} codebooks; this codec has 1..{self.config.num_quantizers}")
        if codes.dtype.is_floating_point:
            raise TypeError(f"codes must be integers, got {codes.dtype}")
        codes = codes.to(device=self.device, dtype=torch.long)
        if codes.numel():
            low, high = int(codes.min()), int(codes.max())
            if low < 0 or high >= self.config.codebook_size:
                raise ValueError(
                    f"codes must lie in [0, {self.config.codebook_size - 1}], got values in [{low}, {high}] "
                    "(strip pad codes, or pass lengths to decode())"
                )
        return codes


def load_codec(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> MossAudioCodec:
    """Load the codec from a local folder or a hub id, e.g. "OpenMOSS-Team/MOSS-Audio-Tokenizer"."""
    return MossAudioCodec.from_pretrained(name_or_path, revision=revision, dtype=dtype, device=device)
