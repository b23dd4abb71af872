"""Random-weight codecs: a tiny one for tests and the full-size shape for benchmarks.

The tiny codec keeps everything that matters structurally: the released rates (24 kHz, 1920
samples per frame, 12.5 frames/s), a 240-sample patch, three 2x patch merges/splits, four transformer stages each
way (with and without input/output projections, as in the released stacks), 32 residual LFQ
quantizers of 1024 codes of dim 8. Only the widths, depths and the attention context (1 s instead
of 10 s, so that short test inputs already run past the window) are small.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from moss_model.checkpoint import CONFIG_FILE
from moss_model.codec.config import CodecConfig, PatchStage, QuantizerConfig, TransformerStage
from moss_model.codec.rates import DEFAULT_SAMPLE_RATE, DEFAULT_SAMPLES_PER_FRAME
from moss_model.codec.model import MossAudioCodec
from moss_model.codec.modules import LayerScale, RMSNorm, WeightNormPointwise


def _t(i: int, o: int, d: int, heads: int = 2, layers: int = 1, ff: int | None = None) -> TransformerStage:
    return TransformerStage(i, o, d, heads, layers, ff or 2 * d, layer_scale=0.01)


def tiny_codec_config(
    *, context_duration: float = 1.0, num_quantizers: int = 32, codebook_size: int = 1024, codebook_dim: int = 8
) -> CodecConfig:
    encoder = (
        PatchStage(240), _t(240, 24, 32),          # 100 Hz  (released: 240 -> 384, d 768)
        PatchStage(2), _t(48, 24, 32),             # 50 Hz
        PatchStage(2), _t(48, 20, 32),             # 25 Hz
        PatchStage(2), _t(40, 32, 40, layers=2),   # 12.5 Hz (released: 1280 -> 768, d 1280)
    )
    decoder = (
        _t(32, 40, 40, layers=2), PatchStage(2),   # 12.5 Hz (released: 768 -> 1280, d 1280)
        _t(20, 32, 32), PatchStage(2),             # 25 Hz
        _t(16, 32, 32), PatchStage(2),             # 50 Hz
        _t(16, 240, 32), PatchStage(240),          # 100 Hz -> 24 kHz
    )
    quantizer = QuantizerConfig(
        input_dim=32, rvq_dim=16, output_dim=32, num_quantizers=num_quantizers,
        codebook_size=codebook_size, codebook_dim=codebook_dim, quantizer_type="rlfq",
    )
    config = CodecConfig(
        sampling_rate=DEFAULT_SAMPLE_RATE, downsample_rate=DEFAULT_SAMPLES_PER_FRAME, context_duration=context_duration,
        encoder=encoder, decoder=decoder, quantizer=quantizer,
    )
    config.validate("tiny codec config")
    return config


def released_codec_config() -> CodecConfig:
    """The shape of the released MOSS-Audio-Tokenizer (as its config.json lists it), ~1.6B parameters."""
    def big(i: int, o: int, d: int) -> TransformerStage:
        if d == 1280:
            return TransformerStage(i, o, 1280, 20, 32, 5120, layer_scale=0.01)
        return TransformerStage(i, o, 768, 12, 12, 3072, layer_scale=0.01)

    encoder = (
        PatchStage(240), big(240, 384, 768), PatchStage(2), big(768, 384, 768),
        PatchStage(2), big(768, 640, 768), PatchStage(2), big(1280, 768, 1280),
    )
    decoder = (
        big(768, 1280, 1280), PatchStage(2), big(640, 768, 768), PatchStage(2),
        big(384, 768, 768), PatchStage(2), big(384, 240, 768), PatchStage(240),
    )
    quantizer = QuantizerConfig(768, 512, 768, 32, 1024, 8, "rlfq")
    config = CodecConfig(DEFAULT_SAMPLE_RATE, DEFAULT_SAMPLES_PER_FRAME, 10.0, encoder, decoder, quantizer)
    config.validate("released codec config")
    return config


@torch.no_grad()
def randomize_(model: MossAudioCodec, seed: int = 0) -> MossAudioCodec:
    """Fill every weight with seeded random values that keep activations in a sane range.

    Layer scales are drawn around 0.5 (not the 0.01 init) so attention and feed-forward updates
    weigh in the output and tests that compare chunked and one-shot passes are sharp.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def fill(t: torch.Tensor, values: torch.Tensor) -> None:
        t.copy_(values.to(dtype=t.dtype))

    for module in model.modules():
        if isinstance(module, nn.Linear):
            w = module.weight
            fill(w, torch.randn(w.shape, generator=gen) / math.sqrt(w.shape[1]))
        elif isinstance(module, nn.LayerNorm):
            fill(module.weight, 1 + 0.1 * torch.randn(module.weight.shape, generator=gen))
            fill(module.bias, 0.1 * torch.randn(module.bias.shape, generator=gen))
        elif isinstance(module, RMSNorm):
            fill(module.alpha, 1 + 0.1 * torch.randn(module.alpha.shape, generator=gen))
        elif isinstance(module, LayerScale):
            fill(module.scale, 0.3 + 0.4 * torch.rand(module.scale.shape, generator=gen))
        elif isinstance(module, WeightNormPointwise):
            p = module.parametrizations.weight
            fill(p.original1, torch.randn(p.original1.shape, generator=gen))
            fill(p.original0, 0.5 + torch.rand(p.original0.shape, generator=gen))  # row norms: keeps the scale
            fill(module.bias, 0.05 * torch.randn(module.bias.shape, generator=gen))
        elif isinstance(module, nn.Embedding):
            fill(module.weight, torch.randn(module.weight.shape, generator=gen))
    return model


def random_codec(
    config: CodecConfig, seed: int = 0, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> MossAudioCodec:
    """A codec of the given shape with seeded random weights (built without a throwaway init)."""
    with torch.device("meta"):
        model = MossAudioCodec(config)
    model.to_empty(device=device)
    randomize_(model, seed)
    if dtype is not None:
        model.to(dtype)
    return model.eval()


def write_tiny_codec(out_dir: Path, seed: int = 0, **config_overrides) -> Path:
    """Write a tiny random-weight codec checkpoint (config.json + model.safetensors) into out_dir.

    `config_overrides` go to `tiny_codec_config` (context_duration, num_quantizers, ...).
    Returns out_dir, which `MossAudioCodec.from_pretrained` / `load_codec` read like a released folder.
    """
    out_dir = Path(out_dir)
    model = random_codec(tiny_codec_config(**config_overrides), seed)
    model.save_pretrained(out_dir)
    json.loads((out_dir / CONFIG_FILE).read_text(encoding="utf-8"))  # written and readable
    return out_dir
