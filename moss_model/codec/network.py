"""The codec's layers and the steps both the one-shot and the streaming paths are built from.

`CodecNetwork` holds the weights (encoder stages, residual quantizer, decoder stages), runs one
pass over whole frames with optional carried attention state, and checks inputs. `MossAudioCodec`
(model.py) adds loading and the one-shot `encode`/`decode`; the streaming encoder and decoder
(streaming.py) drive the same passes chunk by chunk. Both import this module; it imports neither.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from moss_model.codec.config import CodecConfig, PatchStage, Stage
from moss_model.codec.modules import Patch, ResidualQuantizer, StageState, TransformerLayer, TransformerStack


def _stages(stages: Sequence[Stage], contexts: Sequence[int | None], *, down: bool) -> nn.ModuleList:
    modules: list[nn.Module] = []
    for stage, context in zip(stages, contexts):
        if isinstance(stage, PatchStage):
            modules.append(Patch(stage.patch_size, down=down))
        else:
            assert context is not None  # the config gives every transformer stage a context
            modules.append(TransformerStack(stage, context))
    return nn.ModuleList(modules)


class CodecNetwork(nn.Module):
    """Weights, frame passes and input checks of the MOSS audio codec (24 kHz <-> 12.5 Hz released)."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = _stages(config.encoder, config.encoder_contexts(), down=True)
        self.quantizer = ResidualQuantizer(config.quantizer)
        self.decoder = _stages(config.decoder, config.decoder_contexts(), down=False)

    # ------------------------------------------------------------------ properties (from the config)
    @property
    def device(self) -> torch.device:
        return self.quantizer.codebook_quantizers()[0].codebook.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.quantizer.codebook_quantizers()[0].codebook.weight.dtype

    @property
    def sample_rate(self) -> int:
        return self.config.sampling_rate

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def samples_per_frame(self) -> int:
        return self.config.samples_per_frame

    @property
    def num_codebooks(self) -> int:
        return self.config.num_quantizers

    @property
    def default_chunk_frames(self) -> int:
        """Frames per pass when none is given: one attention context (10 s on the released codec)."""
        return self.config.context_frames

    def _stage_dtype(self) -> torch.dtype:
        for module in self.modules():
            if isinstance(module, TransformerLayer):
                return module.linear1.weight.dtype
        return self.dtype

    # ------------------------------------------------------------------ one pass over whole frames
    def init_encoder_states(self) -> list[StageState | None]:
        return [m.init_state() if isinstance(m, TransformerStack) else None for m in self.encoder]

    def init_decoder_states(self) -> list[StageState | None]:
        return [m.init_state() if isinstance(m, TransformerStack) else None for m in self.decoder]

    def encode_frames(self, wave: torch.Tensor, states: list[StageState | None] | None = None) -> torch.Tensor:
        """wave [B, F * samples_per_frame] -> encoder output [B, F, D]; `states` (updated in place)
        continue a stream."""
        x = wave.to(self._stage_dtype()).unsqueeze(-1)  # B, N, 1
        for i, module in enumerate(self.encoder):
            if isinstance(module, TransformerStack):
                x, new_state = module(x, None if states is None else states[i])
                if states is not None:
                    states[i] = new_state
            else:
                x = module(x)
        return x

    def decode_frames(self, codes: torch.Tensor, states: list[StageState | None] | None = None) -> torch.Tensor:
        """codes [B, K, F] -> audio [B, F * samples_per_frame] float32; `states` (updated in place)
        continue a stream."""
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
    def check_waveforms(self, waveforms: torch.Tensor) -> torch.Tensor:
        """`[B, N]` (or `[N]`, `[B, 1, N]`) floating waveforms -> `[B, N]` float32 on the codec's device."""
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

    def check_lengths(self, lengths: torch.Tensor | None, batch: int, size: int, unit: str) -> torch.Tensor:
        """Per-row lengths `[batch]` in [0, size] (all `size` when None), long on the codec's device."""
        if lengths is None:
            return torch.full((batch,), size, dtype=torch.long, device=self.device)
        checked = torch.as_tensor(lengths, dtype=torch.long, device=self.device).reshape(-1)
        if checked.numel() != batch:
            raise ValueError(f"lengths has {checked.numel()} entries for a batch of {batch}")
        if batch and (int(checked.min()) < 0 or int(checked.max()) > size):
            raise ValueError(f"lengths must lie in [0, {size}] {unit}, got {checked.tolist()}")
        return checked

    def mask_codes(self, codes: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes past each row's length set to 0 (any value may sit there, e.g. a pad code), and the lengths."""
        if codes.dim() != 3:
            raise ValueError(f"codes must be [B, K, T], got shape {tuple(codes.shape)}")
        B, _, T = codes.shape
        frames = self.check_lengths(lengths, B, T, "frames").to(codes.device)
        valid = torch.arange(T, device=codes.device) < frames.view(-1, 1)  # B, T
        return torch.where(valid.unsqueeze(1), codes, torch.zeros_like(codes)), frames

    def silence_past(self, audio: torch.Tensor, lengths: torch.Tensor) -> None:
        """Zero (in place) each row's audio past `lengths` frames."""
        spf = self.samples_per_frame
        for row, frames in enumerate(lengths.tolist()):
            audio[row, frames * spf :] = 0

    def check_n_codebooks(self, n_codebooks: int | None) -> int:
        """The codebooks to encode with: all when None, else 1..num_codebooks."""
        total = self.config.num_quantizers
        if n_codebooks is None:
            return total
        if not 1 <= int(n_codebooks) <= total:
            raise ValueError(f"n_codebooks must be in [1, {total}], got {n_codebooks}")
        return int(n_codebooks)

    def check_codes(self, codes: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Codes `[batch_size, K, T]` with values inside the codebooks, long on the codec's device."""
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
