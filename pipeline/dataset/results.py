"""Finished utterances, one file per key: what a rerun finds and skips, and what shards are cut from.

`results/<key[:2]>/<key>.parquet` (one row) under the store root, through fsspec so a local
folder and object storage are the same code path, each written whole (`pipeline.storage.KeyedFiles`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.storage import KeyedFiles

SCHEMA = pa.schema([
    ("key", pa.string()),
    ("flac", pa.binary()),
    ("sample_rate", pa.int32()),
    ("num_samples", pa.int64()),
    ("seed", pa.int64()),
    ("attempts", pa.int32()),
    ("flags", pa.list_(pa.string())),
    ("frames", pa.int32()),
    ("codes", pa.binary()),  # int16 [frames, n_vq], little-endian
    ("n_vq", pa.int32()),
    ("loudness_lufs", pa.float64()),  # measured after normalization (null when not normalized)
])


@dataclass
class Utterance:
    key: str
    flac: bytes
    sample_rate: int
    num_samples: int
    seed: int
    attempts: int
    flags: list[str]
    frames: int
    codes: bytes
    n_vq: int
    loudness_lufs: float | None = None

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    def code_rows(self) -> list[list[int]]:
        return np.frombuffer(self.codes, dtype="<i2").reshape(self.frames, self.n_vq).tolist()


class ResultStore:
    def __init__(self, root: str) -> None:
        self.files = KeyedFiles(root, "results", ".parquet", "result")
        self.root = self.files.root

    def has(self, key: str) -> bool:
        return self.files.has(key)

    def put(self, utterance: Utterance) -> None:
        table = pa.Table.from_pylist([utterance.__dict__], schema=SCHEMA)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        self.files.write(utterance.key, buffer.getvalue())

    def get(self, key: str) -> Utterance:
        row = pq.read_table(io.BytesIO(self.files.read(key))).to_pylist()[0]
        return Utterance(**row)
