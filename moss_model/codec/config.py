"""Typed configuration of the MOSS audio codec, read from the released `config.json`.

The released file lists the encoder and decoder as stacks of stages (`encoder_kwargs`,
`decoder_kwargs`, in execution order): patch stages that fold `patch_size` steps into channels
(encoder) or unfold them (decoder), and causal transformer stages. Keys the codec does not use
(`architectures`, `auto_map`, `reversed_decoder_kwargs`, `version`, ...) are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from moss_model.checkpoint import CONFIG_FILE, CheckpointError, read_json
from moss_model.codec.rates import DEFAULT_SAMPLE_RATE, DEFAULT_SAMPLES_PER_FRAME

# model_type values seen in released codec folders (the released file says "speech_tokenizer").
CODEC_MODEL_TYPES = ("speech_tokenizer", "moss-audio-tokenizer", "moss_audio_tokenizer")
NORMS = ("layer_norm", "rms_norm", "rms_norm_f32")
QUANTIZER_TYPES = ("rlfq", "random_prefix_rlfq", "rvq", "spec_rvq")


class CodecConfigError(CheckpointError):
    """A codec config.json value that is missing, of the wrong type or inconsistent."""


@dataclass(frozen=True)
class PatchStage:
    """Folds `patch_size` time steps into channels (encoder) or back into time (decoder)."""

    patch_size: int

    def to_dict(self) -> dict[str, Any]:
        return {"module_type": "PatchedPretransform", "patch_size": self.patch_size}


@dataclass(frozen=True)
class TransformerStage:
    """A causal transformer with input/output projections (identity when dims agree)."""

    input_dimension: int
    output_dimension: int
    d_model: int
    num_heads: int
    num_layers: int
    dim_feedforward: int
    layer_scale: float | None = 0.01
    norm: str = "layer_norm"
    max_period: float = 10_000.0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        return {
            "module_type": "Transformer",
            "input_dimension": self.input_dimension,
            "output_dimension": self.output_dimension,
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "num_layers": self.num_layers,
            "dim_feedforward": self.dim_feedforward,
            "causal": True,
            "norm": self.norm,
            "positional_embedding": "rope",
            "max_period": self.max_period,
            "gating": "none",
            "layer_scale": self.layer_scale,
            "conv_layout": True,
        }


Stage = Union[PatchStage, TransformerStage]


@dataclass(frozen=True)
class QuantizerConfig:
    """Residual quantizer: project to `rvq_dim`, `num_quantizers` codebooks, project to `output_dim`."""

    input_dim: int
    rvq_dim: int
    output_dim: int
    num_quantizers: int
    codebook_size: int
    codebook_dim: int
    quantizer_type: str = "rlfq"

    @property
    def normalized(self) -> bool:
        """LFQ picks codes by cosine distance (both sides L2-normalized); plain VQ by L2 distance."""
        return self.quantizer_type in ("rlfq", "random_prefix_rlfq")

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_dim": self.input_dim,
            "rvq_dim": self.rvq_dim,
            "output_dim": self.output_dim,
            "num_quantizers": self.num_quantizers,
            "codebook_size": self.codebook_size,
            "codebook_dim": self.codebook_dim,
            "quantizer_type": self.quantizer_type,
        }


@dataclass(frozen=True)
class CodecConfig:
    sampling_rate: int
    downsample_rate: int
    context_duration: float
    encoder: tuple[Stage, ...]
    decoder: tuple[Stage, ...]
    quantizer: QuantizerConfig
    dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # ------------------------------------------------------------------ derived
    @property
    def frame_rate(self) -> float:
        return self.sampling_rate / self.downsample_rate

    @property
    def samples_per_frame(self) -> int:
        return self.downsample_rate

    @property
    def num_quantizers(self) -> int:
        return self.quantizer.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    def encoder_contexts(self) -> list[int | None]:
        """Attention context (in steps of its own rate) of each encoder stage; None for patches."""
        rate = float(self.sampling_rate)
        out: list[int | None] = []
        for stage in self.encoder:
            if isinstance(stage, PatchStage):
                out.append(None)
                rate /= stage.patch_size
            else:
                out.append(int(rate * self.context_duration))
        return out

    def decoder_contexts(self) -> list[int | None]:
        rate = float(self.sampling_rate)
        for stage in self.encoder:
            if isinstance(stage, PatchStage):
                rate /= stage.patch_size
        out: list[int | None] = []
        for stage in self.decoder:
            if isinstance(stage, PatchStage):
                out.append(None)
                rate *= stage.patch_size
            else:
                out.append(int(rate * self.context_duration))
        return out

    @property
    def context_frames(self) -> int:
        """Attention context of the codec at the code frame rate."""
        return max(1, int(self.frame_rate * self.context_duration))

    # ------------------------------------------------------------------ io
    @classmethod
    def from_file(cls, path: str | Path) -> CodecConfig:
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_FILE
        return cls.from_dict(read_json(path), source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "codec config") -> CodecConfig:
        if not isinstance(data, dict):
            raise CodecConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        model_type = data.get("model_type")
        if model_type is not None and model_type not in CODEC_MODEL_TYPES:
            raise CodecConfigError(
                f"{source}: model_type {model_type!r} is not an audio codec config "
                f"(expected one of {', '.join(CODEC_MODEL_TYPES)}). Is this the codec folder?"
            )
        for name in ("encoder_kwargs", "decoder_kwargs", "quantizer_kwargs"):
            if name not in data:
                raise CodecConfigError(f"{source}: missing {name!r}; this does not look like a MOSS audio codec config")
        sampling_rate = _int(data, "sampling_rate", source, default=data.get("sample_rate", DEFAULT_SAMPLE_RATE))
        downsample_rate = _int(data, "downsample_rate", source, default=DEFAULT_SAMPLES_PER_FRAME)
        context = _num(data, "causal_transformer_context_duration", source, default=10.0)
        if context <= 0:
            raise CodecConfigError(f"{source}: causal_transformer_context_duration must be > 0, got {context}")
        encoder = tuple(_stage(s, f"{source}: encoder_kwargs[{i}]") for i, s in enumerate(_list(data, "encoder_kwargs", source)))
        decoder = tuple(_stage(s, f"{source}: decoder_kwargs[{i}]") for i, s in enumerate(_list(data, "decoder_kwargs", source)))
        quantizer = _quantizer(data["quantizer_kwargs"], data.get("quantizer_type"), f"{source}: quantizer_kwargs")
        known = {
            "sampling_rate", "sample_rate", "downsample_rate", "causal_transformer_context_duration",
            "encoder_kwargs", "decoder_kwargs", "quantizer_kwargs", "quantizer_type", "dtype",
        }
        config = cls(
            sampling_rate=sampling_rate,
            downsample_rate=downsample_rate,
            context_duration=float(context),
            encoder=encoder,
            decoder=decoder,
            quantizer=quantizer,
            dtype=str(data.get("dtype") or data.get("torch_dtype") or "float32"),
            extra={k: v for k, v in data.items() if k not in known},
        )
        config.validate(source)
        return config

    def to_dict(self) -> dict[str, Any]:
        """The released config.json layout (so the same loader, ours or upstream's, reads it)."""
        data: dict[str, Any] = {
            "architectures": ["MossAudioTokenizerModel"],
            "model_type": "speech_tokenizer",
            "sampling_rate": self.sampling_rate,
            "sample_rate": self.sampling_rate,
            "downsample_rate": self.downsample_rate,
            "causal_transformer_context_duration": self.context_duration,
            "code_dim": self.quantizer.input_dim,
            "encoder_kwargs": [s.to_dict() for s in self.encoder],
            "decoder_kwargs": [s.to_dict() for s in self.decoder],
            "quantizer_type": self.quantizer.quantizer_type,
            "quantizer_kwargs": self.quantizer.to_dict(),
            "dtype": self.dtype,
        }
        return data

    def validate(self, source: str = "codec config") -> None:
        """Check that the stacks chain: each stage's input width is the previous stage's output."""
        if self.sampling_rate <= 0 or self.downsample_rate <= 0:
            raise CodecConfigError(f"{source}: sampling_rate and downsample_rate must be positive")
        if not any(isinstance(s, TransformerStage) for s in self.encoder):
            raise CodecConfigError(f"{source}: the encoder has no Transformer stage")
        enc_down = math.prod(s.patch_size for s in self.encoder if isinstance(s, PatchStage))
        dec_up = math.prod(s.patch_size for s in self.decoder if isinstance(s, PatchStage))
        if enc_down != self.downsample_rate:
            raise CodecConfigError(
                f"{source}: encoder patch sizes multiply to {enc_down}, but downsample_rate is {self.downsample_rate}"
            )
        if dec_up != self.downsample_rate:
            raise CodecConfigError(
                f"{source}: decoder patch sizes multiply to {dec_up}, but downsample_rate is {self.downsample_rate}"
            )
        width = 1  # a mono waveform
        for i, stage in enumerate(self.encoder):
            width = _chain(stage, width, down=True, where=f"{source}: encoder_kwargs[{i}]")
        if width != self.quantizer.input_dim:
            raise CodecConfigError(
                f"{source}: the encoder ends with width {width} but quantizer_kwargs.input_dim is {self.quantizer.input_dim}"
            )
        width = self.quantizer.output_dim
        for i, stage in enumerate(self.decoder):
            width = _chain(stage, width, down=False, where=f"{source}: decoder_kwargs[{i}]")
        if width != 1:
            raise CodecConfigError(f"{source}: the decoder ends with width {width}, expected 1 (mono waveform)")
        for ctx, where in [(c, "encoder") for c in self.encoder_contexts()] + [(c, "decoder") for c in self.decoder_contexts()]:
            if ctx is not None and ctx < 1:
                raise CodecConfigError(
                    f"{source}: causal_transformer_context_duration {self.context_duration} s gives a {where} "
                    "attention context under one step"
                )


def _chain(stage: Stage, width: int, *, down: bool, where: str) -> int:
    if isinstance(stage, PatchStage):
        if down:
            return width * stage.patch_size
        if width % stage.patch_size:
            raise CodecConfigError(f"{where}: width {width} is not divisible by patch_size {stage.patch_size}")
        return width // stage.patch_size
    if stage.input_dimension != width:
        raise CodecConfigError(f"{where}: input_dimension is {stage.input_dimension} but the previous stage gives {width}")
    return stage.output_dimension


def _stage(data: Any, where: str) -> Stage:
    if not isinstance(data, dict):
        raise CodecConfigError(f"{where}: expected an object, got {type(data).__name__}")
    kind = data.get("module_type")
    if kind == "PatchedPretransform":
        size = _int(data, "patch_size", where)
        if size < 1:
            raise CodecConfigError(f"{where}: patch_size must be >= 1, got {size}")
        return PatchStage(size)
    if kind != "Transformer":
        raise CodecConfigError(f"{where}: unknown module_type {kind!r} (expected 'PatchedPretransform' or 'Transformer')")
    if data.get("causal", True) is not True:
        raise CodecConfigError(f"{where}: only causal transformers are supported (causal: true)")
    pos = data.get("positional_embedding", "rope")
    if pos != "rope":
        raise CodecConfigError(f"{where}: positional_embedding {pos!r} is not supported (only 'rope')")
    gating = data.get("gating", "none")
    if gating != "none":
        raise CodecConfigError(f"{where}: gating {gating!r} is not supported (only 'none')")
    norm = data.get("norm", "layer_norm")
    if norm not in NORMS:
        raise CodecConfigError(f"{where}: norm {norm!r} is not supported (choose one of {', '.join(NORMS)})")
    for flag in ("weights_per_step", "positional_scale"):
        if data.get(flag) not in (None, 0, 1, 1.0, False):
            raise CodecConfigError(f"{where}: {flag}={data[flag]!r} is not supported")
    stage = TransformerStage(
        input_dimension=_int(data, "input_dimension", where),
        output_dimension=_int(data, "output_dimension", where),
        d_model=_int(data, "d_model", where),
        num_heads=_int(data, "num_heads", where),
        num_layers=_int(data, "num_layers", where),
        dim_feedforward=_int(data, "dim_feedforward", where, default=2048),
        layer_scale=None if data.get("layer_scale") is None else float(data["layer_scale"]),
        norm=norm,
        max_period=float(data.get("max_period", 10_000)),
    )
    if stage.d_model % stage.num_heads:
        raise CodecConfigError(f"{where}: d_model {stage.d_model} is not divisible by num_heads {stage.num_heads}")
    if stage.head_dim % 2:
        raise CodecConfigError(f"{where}: RoPE needs an even head dim, got {stage.head_dim}")
    return stage


def _quantizer(data: Any, top_level_type: Any, where: str) -> QuantizerConfig:
    if not isinstance(data, dict):
        raise CodecConfigError(f"{where}: expected an object, got {type(data).__name__}")
    qtype = data.get("quantizer_type") or top_level_type or "rlfq"
    if qtype not in QUANTIZER_TYPES:
        raise CodecConfigError(f"{where}: quantizer_type {qtype!r} is not supported (choose one of {', '.join(QUANTIZER_TYPES)})")
    input_dim = _int(data, "input_dim", where)
    return QuantizerConfig(
        input_dim=input_dim,
        rvq_dim=int(data.get("rvq_dim") or input_dim),
        output_dim=int(data.get("output_dim") or input_dim),
        num_quantizers=_int(data, "num_quantizers", where, default=32),
        codebook_size=_int(data, "codebook_size", where, default=1024),
        codebook_dim=_int(data, "codebook_dim", where, default=8),
        quantizer_type=qtype,
    )


def _list(data: dict, key: str, source: str) -> list:
    value = data[key]
    if not isinstance(value, list) or not value:
        raise CodecConfigError(f"{source}: {key} must be a non-empty list of stages")
    return value


_MISSING = object()


def _int(data: dict, key: str, where: str, default: Any = _MISSING) -> int:
    value = data.get(key, default)
    if value is _MISSING:
        raise CodecConfigError(f"{where}: missing {key!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise CodecConfigError(f"{where}: {key} must be an integer, got {value!r}")
    return int(value)


def _num(data: dict, key: str, where: str, default: Any = _MISSING) -> float:
    value = data.get(key, default)
    if value is _MISSING:
        raise CodecConfigError(f"{where}: missing {key!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CodecConfigError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)
