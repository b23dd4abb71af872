"""Our implementation of the MOSS-TTS delay model and its codec (no remote code).

    from moss_model import load_tts, SpeechRequest, DecodingParams

The names below are loaded on first use, so that importing a light submodule (e.g.
`moss_model.codec.rates`) does not import torch and the model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moss_model.checkpoint import CheckpointError
    from moss_model.config import ConfigError, MossTTSConfig
    from moss_model.generation import Generator, RowResult
    from moss_model.loading import TTS, load_tts
    from moss_model.processor import MossTTSProcessor, Prompt, SpeechRequest
    from moss_model.sampling import DecodingParams, SamplingParams

# exported name -> the submodule that defines it
_EXPORTS = {
    "CheckpointError": "moss_model.checkpoint",
    "ConfigError": "moss_model.config",
    "DecodingParams": "moss_model.sampling",
    "Generator": "moss_model.generation",
    "MossTTSConfig": "moss_model.config",
    "MossTTSProcessor": "moss_model.processor",
    "Prompt": "moss_model.processor",
    "RowResult": "moss_model.generation",
    "SamplingParams": "moss_model.sampling",
    "SpeechRequest": "moss_model.processor",
    "TTS": "moss_model.loading",
    "load_tts": "moss_model.loading",
}

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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'moss_model' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
