"""Typed configuration of the MOSS-TTS delay model, read from the released `config.json`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moss_model.checkpoint import CONFIG_FILE, CheckpointError, read_json
from moss_model.codec.rates import DEFAULT_SAMPLE_RATE

MODEL_TYPE = "moss_tts_delay"


class ConfigError(CheckpointError):
    """A config.json value that is missing, of the wrong type or inconsistent."""


@dataclass(frozen=True)
class BackboneConfig:
    """The Qwen3 decoder's shape (the `language_config` block)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 40960
    attention_bias: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> BackboneConfig:
        required = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"]
        missing = [name for name in required if name not in data]
        if missing:
            raise ConfigError(f"{source}: language_config lacks {', '.join(missing)}")
        heads = _int(data, "num_attention_heads", source)
        hidden = _int(data, "hidden_size", source)
        kv_heads = int(data.get("num_key_value_heads") or heads)
        head_dim = int(data.get("head_dim") or hidden // heads)
        if heads % kv_heads:
            raise ConfigError(
                f"{source}: num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kv_heads})"
            )
        rope_theta = data.get("rope_theta")
        if rope_theta is None:  # transformers 5 nests it under rope_parameters
            rope_theta = (data.get("rope_parameters") or {}).get("rope_theta", 1_000_000.0)
        scaling = data.get("rope_scaling") or {}
        rope_type = scaling.get("rope_type", scaling.get("type", "default")) if scaling else "default"
        if rope_type not in ("default", None):
            raise ConfigError(f"{source}: rope scaling {rope_type!r} is not supported (only default RoPE)")
        return cls(
            vocab_size=_int(data, "vocab_size", source),
            hidden_size=hidden,
            num_hidden_layers=_int(data, "num_hidden_layers", source),
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            intermediate_size=_int(data, "intermediate_size", source),
            head_dim=head_dim,
            rms_norm_eps=float(data.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope_theta),
            max_position_embeddings=int(data.get("max_position_embeddings", 40960)),
            attention_bias=bool(data.get("attention_bias", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(model_type="qwen3", hidden_act="silu", tie_word_embeddings=False)
        return data


@dataclass(frozen=True)
class MossTTSConfig:
    """The delay model: backbone plus audio channels and the special token ids."""

    backbone: BackboneConfig
    n_vq: int = 32
    audio_vocab_size: int = 1024
    audio_pad_code: int = 1024
    sampling_rate: int = DEFAULT_SAMPLE_RATE
    pad_token_id: int = 151643
    im_start_token_id: int = 151644
    im_end_token_id: int = 151645
    audio_start_token_id: int = 151652
    audio_end_token_id: int = 151653
    audio_user_slot_token_id: int = 151654
    audio_assistant_gen_slot_token_id: int = 151656
    audio_assistant_delay_slot_token_id: int = 151662
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    TOKEN_ID_FIELDS = (
        "pad_token_id",
        "im_start_token_id",
        "im_end_token_id",
        "audio_start_token_id",
        "audio_end_token_id",
        "audio_user_slot_token_id",
        "audio_assistant_gen_slot_token_id",
        "audio_assistant_delay_slot_token_id",
    )

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = CONFIG_FILE) -> MossTTSConfig:
        model_type = data.get("model_type")
        if model_type != MODEL_TYPE:
            raise ConfigError(f"{source}: model_type is {model_type!r}, expected {MODEL_TYPE!r}")
        language = data.get("language_config")
        if not isinstance(language, dict):
            raise ConfigError(f"{source}: 'language_config' (the Qwen3 backbone config) is missing")
        backbone = BackboneConfig.from_dict(language, source)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in ("backbone", "extra") or f.name not in data:
                continue
            values[f.name] = _int(data, f.name, source)
        known = {f.name for f in dataclasses.fields(cls)} | {"language_config", "model_type"}
        config = cls(backbone=backbone, extra={k: v for k, v in data.items() if k not in known}, **values)
        config.validate(source)
        return config

    @classmethod
    def from_folder(cls, folder: str | Path) -> MossTTSConfig:
        path = Path(folder) / CONFIG_FILE
        return cls.from_dict(read_json(path), str(path))

    def validate(self, source: str = CONFIG_FILE) -> None:
        if self.n_vq < 1:
            raise ConfigError(f"{source}: n_vq must be at least 1, got {self.n_vq}")
        if not 0 <= self.audio_pad_code <= self.audio_vocab_size:
            raise ConfigError(
                f"{source}: audio_pad_code {self.audio_pad_code} must lie in 0..audio_vocab_size ({self.audio_vocab_size})"
            )
        ids = {name: getattr(self, name) for name in self.TOKEN_ID_FIELDS}
        out_of_range = [f"{n}={v}" for n, v in ids.items() if not 0 <= v < self.backbone.vocab_size]
        if out_of_range:
            raise ConfigError(
                f"{source}: token id(s) outside the text vocabulary of {self.backbone.vocab_size}: {', '.join(out_of_range)}"
            )
        if len(set(ids.values())) != len(ids):
            raise ConfigError(f"{source}: special token ids must be distinct, got {ids}")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"model_type": MODEL_TYPE, "architectures": ["MossTTSDelayModel"]}
        data["language_config"] = self.backbone.to_dict()
        for f in dataclasses.fields(self):
            if f.name not in ("backbone", "extra"):
                data[f.name] = getattr(self, f.name)
        data.update(self.extra)
        return data


def _int(data: dict[str, Any], name: str, source: str) -> int:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{source}: {name} must be an integer, got {value!r}")
    return value
