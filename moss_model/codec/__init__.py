"""Our implementation of the MOSS audio codec (MOSS-Audio-Tokenizer): 24 kHz <-> 12.5 Hz codes.

`AudioCodec` is the interface the rest of the project uses; `MossAudioCodec` implements it. The
rates come from the codec's config; `DEFAULT_SAMPLE_RATE` / `DEFAULT_FRAME_RATE` (rates.py) are
the released values, for code that has no codec config to read them from. The names below are
loaded on first use, so that `moss_model.codec.rates` can be read without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moss_model.codec.config import CodecConfig, CodecConfigError, PatchStage, QuantizerConfig, TransformerStage
    from moss_model.codec.interface import AudioCodec, DecodeResult, EncodeResult
    from moss_model.codec.model import MossAudioCodec, load_codec
    from moss_model.codec.rates import DEFAULT_FRAME_RATE, DEFAULT_SAMPLE_RATE, DEFAULT_SAMPLES_PER_FRAME
    from moss_model.codec.streaming import StreamingDecoder, StreamingEncoder, decode_stream
    from moss_model.codec.tiny import random_codec, released_codec_config, tiny_codec_config, write_tiny_codec

# exported name -> the submodule that defines it
_EXPORTS = {
    "DEFAULT_FRAME_RATE": "moss_model.codec.rates",
    "DEFAULT_SAMPLES_PER_FRAME": "moss_model.codec.rates",
    "DEFAULT_SAMPLE_RATE": "moss_model.codec.rates",
    "AudioCodec": "moss_model.codec.interface",
    "CodecConfig": "moss_model.codec.config",
    "CodecConfigError": "moss_model.codec.config",
    "DecodeResult": "moss_model.codec.interface",
    "EncodeResult": "moss_model.codec.interface",
    "MossAudioCodec": "moss_model.codec.model",
    "PatchStage": "moss_model.codec.config",
    "QuantizerConfig": "moss_model.codec.config",
    "StreamingDecoder": "moss_model.codec.streaming",
    "StreamingEncoder": "moss_model.codec.streaming",
    "TransformerStage": "moss_model.codec.config",
    "decode_stream": "moss_model.codec.streaming",
    "load_codec": "moss_model.codec.model",
    "random_codec": "moss_model.codec.tiny",
    "released_codec_config": "moss_model.codec.tiny",
    "tiny_codec_config": "moss_model.codec.tiny",
    "write_tiny_codec": "moss_model.codec.tiny",
}

__all__ = [
    "DEFAULT_FRAME_RATE",
    "DEFAULT_SAMPLES_PER_FRAME",
    "DEFAULT_SAMPLE_RATE",
    "AudioCodec",
    "CodecConfig",
    "CodecConfigError",
    "DecodeResult",
    "EncodeResult",
    "MossAudioCodec",
    "PatchStage",
    "QuantizerConfig",
    "StreamingDecoder",
    "StreamingEncoder",
    "TransformerStage",
    "decode_stream",
    "load_codec",
    "random_codec",
    "released_codec_config",
    "tiny_codec_config",
    "write_tiny_codec",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'moss_model.codec' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
