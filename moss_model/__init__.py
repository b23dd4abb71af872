"""Our implementation of the MOSS-TTS delay model and its codec (no remote code).

    from moss_model import load_tts, SpeechRequest, DecodingParams
"""

from moss_model.checkpoint import CheckpointError
from moss_model.config import ConfigError, MossTTSConfig
from moss_model.generation import Generator, RowResult
from moss_model.loading import TTS, load_tts
from moss_model.processor import MossTTSProcessor, Prompt, SpeechRequest
from moss_model.sampling import DecodingParams, SamplingParams

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DecodingParams",
    "Generator",
    "MossTTSConfig",
    "MossTTSProcessor",
    "Prompt",
    "RowResult",
    "SamplingParams",
    "SpeechRequest",
    "TTS",
    "load_tts",
]
