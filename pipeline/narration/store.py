"""The segment store: each finished segment's codes and facts, written once under its key.

One file per segment, `segments/<key[:2]>/<key>.safetensors` under the store root, holding
the codes tensor, the segment's facts as JSON metadata and, when the narrator decoded it, the
segment's audio as FLAC bytes (`pipeline.narration.segment_audio`: lossless for the stored grid). Files
go through fsspec, so a local folder and object storage (s3://, gs://, ...) are the same code
path. A segment becomes visible only once whole (`pipeline.storage.KeyedFiles`): a key that is
present is a finished segment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from pipeline.narration.segment_audio import audio_from_flac, audio_to_flac
from pipeline.storage import KeyedFiles


@dataclass
class StoredSegment:
    key: str
    codes: np.ndarray  # frames, n_vq (int16)
    facts: dict[str, Any] = field(default_factory=dict)  # text, seed, attempts, checks, flags, ...
    audio: np.ndarray | None = None  # float32 mono on the stored grid, decoded where it was narrated
    sample_rate: int | None = None  # of `audio`
    flac: bytes | None = None  # `audio` already encoded by audio_to_flac (else `put` encodes it)

    @property
    def frames(self) -> int:
        return int(self.codes.shape[0])


class SegmentStore:
    def __init__(self, root: str) -> None:
        self.files = KeyedFiles(root, "segments", ".safetensors", "segment")
        self.root = self.files.root

    def has(self, key: str) -> bool:
        return self.files.has(key)

    def keys(self) -> set[str]:
        """Every stored key (one listing of the store)."""
        return self.files.keys()

    def put(self, segment: StoredSegment) -> None:
        tensors = {"codes": torch.from_numpy(np.ascontiguousarray(segment.codes, dtype=np.int16))}
        if segment.audio is not None:
            if not segment.sample_rate:
                raise ValueError(f"segment {segment.key}: audio without a sample rate")
            flac = segment.flac if segment.flac is not None else audio_to_flac(segment.audio, segment.sample_rate)
            tensors["audio_flac"] = torch.frombuffer(bytearray(flac), dtype=torch.uint8)
        data = save_tensors(tensors, metadata={"facts": json.dumps(segment.facts, sort_keys=True, ensure_ascii=False)})
        self.files.write(segment.key, data)

    def get(self, key: str) -> StoredSegment:
        data = self.files.read(key)
        tensors = load_tensors(data)
        facts = json.loads(_metadata(data).get("facts", "{}"))
        audio, sample_rate = None, None
        if "audio_flac" in tensors:
            audio, sample_rate = audio_from_flac(tensors["audio_flac"].numpy().tobytes())
        return StoredSegment(key=key, codes=tensors["codes"].numpy(), facts=facts, audio=audio, sample_rate=sample_rate)


def _metadata(data: bytes) -> dict[str, str]:
    """The string metadata of a safetensors file (its JSON header's __metadata__)."""
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_size])
    return header.get("__metadata__", {})
