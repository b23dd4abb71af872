"""One call from a checkpoint name to a ready model, processor and generator."""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from moss_model.checkpoint import CONFIG_FILE, INDEX_FILE, SINGLE_FILE, load_model, read_json, resolve_checkpoint
from moss_model.config import MossTTSConfig
from moss_model.generation import Generator
from moss_model.model import MossTTSDelayModel
from moss_model.processor import MossTTSProcessor

PROCESSOR_CONFIG_FILE = "processor_config.json"
DEFAULT_CODEC = "OpenMOSS-Team/MOSS-Audio-Tokenizer"
SAMPLE_BYTES = 64 << 10


@dataclass
class TTS:
    """A loaded delay model with its processor and generator."""

    model: MossTTSDelayModel
    processor: MossTTSProcessor
    generator: Generator
    config: MossTTSConfig
    folder: Path
    model_id: str
    revision: str
    codec_name: str  # the codec the processor config names (folder or hub id)


def load_tts(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> TTS:
    """Load a MOSS-TTS delay checkpoint from a local folder or a hub id (no remote code)."""
    folder = resolve_checkpoint(name_or_path, revision)
    config = MossTTSConfig.from_folder(folder)
    model = load_model(lambda: MossTTSDelayModel(config), folder, dtype=dtype, device=device)
    processor = MossTTSProcessor.from_folder(folder, config)
    return TTS(
        model=model,
        processor=processor,
        generator=Generator(model, processor),
        config=config,
        folder=folder,
        model_id=str(name_or_path),
        revision=revision or checkpoint_fingerprint(folder),
        codec_name=codec_name(folder),
    )


def codec_name(folder: Path) -> str:
    """The codec named by the processor config; a relative path is taken relative to the folder."""
    path = folder / PROCESSOR_CONFIG_FILE
    if not path.is_file():
        return DEFAULT_CODEC
    data = read_json(path)
    name = data.get("audio_tokenizer_name_or_path") or (data.get("audio_tokenizer") or {}).get(
        "audio_tokenizer_name_or_path"
    )
    if not name:
        return DEFAULT_CODEC
    candidate = folder / name
    return str(candidate) if not Path(name).is_absolute() and candidate.is_dir() else str(name)


def checkpoint_fingerprint(folder: Path) -> str:
    """A short content hash of a checkpoint: its config and every safetensors header.

    Headers hold each tensor's name, shape, dtype and byte offsets; a sample of the weight bytes
    (the first and last 64 KiB of each file) tells retrained weights of the same layout apart.
    The rest is not read, so this is instant even for 16 GB.
    """
    digest = hashlib.sha256((folder / CONFIG_FILE).read_bytes())
    files = [folder / SINGLE_FILE] if (folder / SINGLE_FILE).is_file() else []
    if (folder / INDEX_FILE).is_file():
        files = sorted({folder / n for n in read_json(folder / INDEX_FILE)["weight_map"].values()})
    for file in files:
        with open(file, "rb") as handle:
            (header_size,) = struct.unpack("<Q", handle.read(8))
            digest.update(handle.read(header_size))
            digest.update(handle.read(SAMPLE_BYTES))
            handle.seek(max(8 + header_size, file.stat().st_size - SAMPLE_BYTES))
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()[:16]
