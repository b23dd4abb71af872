"""Our implementation of the MOSS audio codec (MOSS-Audio-Tokenizer): 24 kHz <-> 12.5 Hz codes.

`AudioCodec` is the interface the rest of the project uses; `MossAudioCodec` implements it. The
rates come from the codec's config; `DEFAULT_SAMPLE_RATE` / `DEFAULT_FRAME_RATE` are the released
values, for code that has no codec config to read them from.
"""

from moss_model.codec.config import (
    DEFAULT_FRAME_RATE,
    DEFAULT_SAMPLE_RATE,
    DEFAULT_SAMPLES_PER_FRAME,
    CodecConfig,
    CodecConfigError,
    PatchStage,
    QuantizerConfig,
    TransformerStage,
)
from moss_model.codec.interface import AudioCodec, DecodeResult, EncodeResult
from moss_model.codec.model import MossAudioCodec, load_codec
from moss_model.codec.streaming import StreamingDecoder, StreamingEncoder, decode_stream
from moss_model.codec.tiny import random_codec, released_codec_config, tiny_codec_config, write_tiny_codec

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
