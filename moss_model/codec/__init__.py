"""Our implementation of the MOSS audio codec (MOSS-Audio-Tokenizer): 24 kHz <-> 12.5 Hz codes."""

from moss_model.codec.config import CodecConfig, CodecConfigError, PatchStage, QuantizerConfig, TransformerStage
from moss_model.codec.model import DecodeResult, EncodeResult, MossAudioCodec, load_codec
from moss_model.codec.streaming import StreamingDecoder, StreamingEncoder, decode_stream
from moss_model.codec.tiny import random_codec, released_codec_config, tiny_codec_config, write_tiny_codec

__all__ = [
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
