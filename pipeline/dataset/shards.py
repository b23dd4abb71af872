"""Shards: Parquet files of finished utterances in the Hugging Face `datasets` Audio layout, cut
from the manifest's row groups, written under a temporary name and renamed when whole.

A shard that is present is complete; its schema metadata records the digest of its ids and keys,
so a rerun over other input or settings rewrites it instead of trusting a stale one.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset.manifest import ManifestInfo, shard_items
from pipeline.dataset.results import ResultStore

DATA_DIR = "data"
WEBDATASET_DIR = "webdataset"
SPLIT = "train"
METADATA_KEY = b"moss_narrator.dataset"
RESERVED = ("audio", "id", "source_id", "part", "parts", "text", "normalized_text", "language", "voice", "seed",
            "attempts", "flags", "duration_s", "sample_rate", "model_id", "model_revision", "decoding", "key", "codes")


@dataclass(frozen=True)
class ShardOptions:
    model_id: str
    model_revision: str
    decoding: str  # JSON of the decoding parameters
    sample_rate: int
    include_codes: bool = False
    webdataset: bool = False


def shard_name(index: int, total: int, suffix: str = "parquet") -> str:
    return f"{SPLIT}-{index:05d}-of-{total:05d}.{suffix}"


def extra_column(name: str) -> str:
    """An input column passed through, renamed when it would clash with one of ours."""
    return f"input_{name}" if name in RESERVED else name


def _value(dtype: str) -> dict:
    return {"dtype": dtype, "_type": "Value"}


_COLUMNS = [  # name, Arrow type, Hugging Face feature
    ("id", pa.string(), _value("string")),
    ("source_id", pa.string(), _value("string")),
    ("part", pa.int32(), _value("int32")),
    ("parts", pa.int32(), _value("int32")),
    ("text", pa.string(), _value("string")),
    ("normalized_text", pa.string(), _value("string")),
    ("language", pa.string(), _value("string")),
    ("voice", pa.string(), _value("string")),
    ("seed", pa.int64(), _value("int64")),
    ("attempts", pa.int32(), _value("int32")),
    ("flags", pa.list_(pa.string()), [_value("string")]),
    ("duration_s", pa.float64(), _value("float64")),
    ("sample_rate", pa.int32(), _value("int32")),
    ("model_id", pa.string(), _value("string")),
    ("model_revision", pa.string(), _value("string")),
    ("decoding", pa.string(), _value("string")),
    ("key", pa.string(), _value("string")),
]


def shard_schema(options: ShardOptions, extra_columns: list[str]) -> pa.Schema:
    """The shards' Arrow schema with the `huggingface` metadata that makes `audio` an Audio column
    (written by hand: the job does not need the `datasets` package; lists in the plain form every
    version of it reads)."""
    columns = [("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
                {"sampling_rate": options.sample_rate, "_type": "Audio"}), *_COLUMNS]
    if options.include_codes:
        columns.append(("codes", pa.list_(pa.list_(pa.int16())), [[_value("int16")]]))
    columns += [(extra_column(name), pa.string(), _value("string")) for name in extra_columns]
    hf = {"info": {"features": {name: feature for name, _, feature in columns}}}
    return pa.schema([pa.field(name, kind) for name, kind, _ in columns],
                     metadata={b"huggingface": json.dumps(hf).encode()})


def shard_digest(path: Path) -> str | None:
    """The digest a finished shard records (None: no such shard, or not one of ours)."""
    if not path.is_file():
        return None
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError):
        return None
    value = metadata.get(METADATA_KEY)
    return json.loads(value)["digest"] if value else None


def write_shard(output: Path, index: int, info: ManifestInfo, store_root: str, options: ShardOptions) -> dict:
    """Cut shard `index` from the manifest and the stored results; returns its path and row count."""
    store = ResultStore(store_root)
    rows = []
    for item in shard_items(output, index):
        utterance = store.get(item["key"])
        extra = json.loads(item["extra"])
        row = {
            "audio": {"bytes": utterance.flac, "path": f"{_safe(item['id'])}.flac"},
            "id": item["id"], "source_id": item["source_id"], "part": item["part"], "parts": item["parts"],
            "text": item["text"], "normalized_text": item["normalized_text"], "language": item["language"],
            "voice": item["voice"], "seed": utterance.seed, "attempts": utterance.attempts, "flags": utterance.flags,
            "duration_s": utterance.duration_s, "sample_rate": utterance.sample_rate, "model_id": options.model_id,
            "model_revision": options.model_revision, "decoding": options.decoding, "key": item["key"],
        }
        if options.include_codes:
            row["codes"] = utterance.code_rows()
        for name in info.extra_columns:
            value = extra.get(name)
            row[extra_column(name)] = None if value is None else value if isinstance(value, str) else json.dumps(value)
        rows.append(row)
    schema = shard_schema(options, info.extra_columns)
    schema = schema.with_metadata({**(schema.metadata or {}),
                                   METADATA_KEY: json.dumps({"digest": info.shard_digests[index], "shard": index,
                                                             "shards": info.shards}).encode()})
    table = pa.Table.from_pylist(rows, schema=schema)
    folder = output / DATA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / shard_name(index, info.shards)
    partial = folder / f".{path.name}.{uuid.uuid4().hex}.partial"
    try:
        pq.write_table(table, partial, row_group_size=256)
        if options.webdataset:
            _write_tar(output / WEBDATASET_DIR, shard_name(index, info.shards, "tar"), rows)
        os.replace(partial, path)  # last: a shard that is present is whole (and so is its tar)
    finally:
        partial.unlink(missing_ok=True)
    return {"shard": index, "path": str(path), "rows": len(rows)}


def _write_tar(folder: Path, name: str, rows: list[dict]) -> None:
    """WebDataset: per row `<id>.flac` and `<id>.json` (the metadata), in order, fixed mtimes."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{name}.{uuid.uuid4().hex}.partial"
    try:
        with tarfile.open(partial, "w", format=tarfile.USTAR_FORMAT) as tar:
            for row in rows:
                stem = _safe(row["id"])
                metadata = {k: v for k, v in row.items() if k not in ("audio", "codes")}
                for suffix, data in (("flac", row["audio"]["bytes"]),
                                     ("json", json.dumps(metadata, ensure_ascii=False, sort_keys=True).encode())):
                    member = tarfile.TarInfo(f"{stem}.{suffix}")
                    member.size, member.mtime, member.mode = len(data), 0, 0o644
                    tar.addfile(member, io.BytesIO(data))
        os.replace(partial, folder / name)
    finally:
        partial.unlink(missing_ok=True)


def _safe(row_id: str) -> str:
    """A file stem for an id: WebDataset groups files by the name up to the first dot."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in row_id)


def shard_summary_columns(output: Path) -> list[pa.Table]:
    """The small columns of every finished shard (no audio), for the card and the summary."""
    tables = []
    for path in sorted((output / DATA_DIR).glob(f"{SPLIT}-*.parquet")):
        tables.append(pq.read_table(path, columns=["voice", "language", "duration_s", "flags", "attempts"]))
    return tables
