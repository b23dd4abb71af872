"""Finished utterances, one file per key: what a rerun finds and skips, and what shards are cut from.

`results/<key[:2]>/<key>.parquet` (one row) under the store root, through fsspec so a local
folder and object storage are the same code path; locally written under a temporary name and
renamed, so a present file is a whole one.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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
        self.root = str(root).rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.root)

    def _path(self, key: str) -> str:
        if not key or not key.isalnum():
            raise ValueError(f"result key must be alphanumeric, got {key!r}")
        return f"{self.base}/results/{key[:2]}/{key}.parquet"

    def has(self, key: str) -> bool:
        path = self._path(key)
        self.fs.invalidate_cache(path.rsplit("/", 1)[0])  # other processes write here: never trust a cached listing
        return self.fs.exists(path)

    def put(self, utterance: Utterance) -> None:
        table = pa.Table.from_pylist([utterance.__dict__], schema=SCHEMA)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        path = self._path(utterance.key)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        if protocol in ("file", "local"):
            temporary = f"{path}.{uuid.uuid4().hex}.partial"
            with self.fs.open(temporary, "wb") as handle:
                handle.write(buffer.getvalue())
            self.fs.mv(temporary, path)
        else:  # an object store publishes one PUT whole
            with self.fs.open(path, "wb") as handle:
                handle.write(buffer.getvalue())

    def get(self, key: str) -> Utterance:
        with self.fs.open(self._path(key), "rb") as handle:
            row = pq.read_table(io.BytesIO(handle.read())).to_pylist()[0]
        return Utterance(**row)
