"""The work list: every accepted row's work items in input order, one Parquet row group per
shard, so shard i is exactly row group i whatever the schedule; and rejects with their reasons.

Written before any model loads; rewritten identically by a rerun over the same input and config.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset.prepare import Reject, WorkItem

MANIFEST_FILE = "manifest.parquet"
MANIFEST_INFO = "manifest.json"
REJECTS_FILE = "rejects.jsonl"

SCHEMA = pa.schema([
    pa.field("shard", pa.int32()),
    *[pa.field(f.name, pa.int32() if f.type in ("int", "int | None") else pa.string()) for f in fields(WorkItem)],
])


@dataclass(frozen=True)
class ManifestInfo:
    rows: int
    shard_size: int
    shard_rows: list[int]  # rows of each shard
    shard_digests: list[str]  # of each shard's ids and keys: a finished shard with another digest is stale
    rejects: int
    reject_reasons: dict[str, int]
    extra_columns: list[str]  # the input's other columns, passed through

    @property
    def shards(self) -> int:
        return len(self.shard_rows)


def write_manifest(entries: Iterable[WorkItem | Reject], output: Path, shard_size: int) -> ManifestInfo:
    """Stream the work items into the manifest (one row group per shard) and the rejects into their file."""
    manifest, rejects_path = output / MANIFEST_FILE, output / REJECTS_FILE
    partial = output / f".{MANIFEST_FILE}.{uuid.uuid4().hex}.partial"
    rejects_partial = output / f".{REJECTS_FILE}.{uuid.uuid4().hex}.partial"
    shard_rows: list[int] = []
    digests: list[str] = []
    reasons: dict[str, int] = {}
    extra: dict[str, None] = {}
    buffer: list[WorkItem] = []
    rows = 0

    def flush(writer: pq.ParquetWriter) -> None:
        shard = len(shard_rows)
        columns = {"shard": [shard] * len(buffer)}
        for f in fields(WorkItem):
            columns[f.name] = [getattr(item, f.name) for item in buffer]
        writer.write_table(pa.table(columns, schema=SCHEMA), row_group_size=len(buffer))
        digest = hashlib.sha256("\n".join(f"{i.id}\t{i.key}" for i in buffer).encode()).hexdigest()[:16]
        shard_rows.append(len(buffer))
        digests.append(digest)
        buffer.clear()

    try:
        with pq.ParquetWriter(partial, SCHEMA) as writer, rejects_partial.open("w", encoding="utf-8") as rejected:
            for entry in entries:
                if isinstance(entry, Reject):
                    reasons[entry.reason] = reasons.get(entry.reason, 0) + 1
                    rejected.write(json.dumps(asdict(entry), ensure_ascii=False) + "\n")
                    continue
                for name in json.loads(entry.extra):
                    extra.setdefault(name)
                buffer.append(entry)
                rows += 1
                if len(buffer) == shard_size:
                    flush(writer)
            if buffer:
                flush(writer)
        os.replace(partial, manifest)
        os.replace(rejects_partial, rejects_path)
    finally:
        for leftover in (partial, rejects_partial):
            leftover.unlink(missing_ok=True)
    info = ManifestInfo(rows, shard_size, shard_rows, digests, sum(reasons.values()), reasons, list(extra))
    info_partial = output / f".{MANIFEST_INFO}.partial"
    info_partial.write_text(json.dumps(asdict(info), indent=1), encoding="utf-8")
    os.replace(info_partial, output / MANIFEST_INFO)
    return info


def read_info(output: Path) -> ManifestInfo:
    return ManifestInfo(**json.loads((output / MANIFEST_INFO).read_text(encoding="utf-8")))


def shard_items(output: Path, shard: int) -> list[dict]:
    """The work items of one shard, in order."""
    return pq.ParquetFile(output / MANIFEST_FILE).read_row_group(shard).to_pylist()
