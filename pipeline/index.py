"""The book's index: Parquet tables that say where every sentence sits.

    <output>/index/segments.parquet  one row per segment: text, key, seed, attempts, flags,
                                     frames, start/end sample and seconds in its chapter file, ...
    <output>/index/chapters.parquet  one row per chapter: title, files, duration, loudness
    <output>/index/book.parquet      one row: title, author, model, decoding, totals, M4B path

Each table is written to a temporary name and renamed, and book.parquet last: a run that
died half-way never leaves an index that looks complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

INDEX_DIR = "index"


def write_table(rows: list[dict[str, Any]], path: Path, schema: pa.Schema | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    temporary = path.with_name(path.name + ".partial")
    pq.write_table(table, temporary)
    os.replace(temporary, path)
    return path


def write_index(
    output: Path,
    segment_rows: list[dict[str, Any]],
    chapter_rows: list[dict[str, Any]],
    book_row: dict[str, Any],
) -> Path:
    folder = Path(output) / INDEX_DIR
    (folder / "book.parquet").unlink(missing_ok=True)  # the old run's index is no longer complete
    write_table(segment_rows, folder / "segments.parquet")
    write_table(chapter_rows, folder / "chapters.parquet")
    row = {k: (json.dumps(v, sort_keys=True) if isinstance(v, dict) else v) for k, v in book_row.items()}
    write_table([row], folder / "book.parquet")
    return folder


def read_index(output: Path) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(segments, chapters, book) tables of a finished run."""
    folder = Path(output) / INDEX_DIR
    if not (folder / "book.parquet").is_file():
        raise FileNotFoundError(f"{folder} holds no complete index (book.parquet is missing)")
    return (pq.read_table(folder / "segments.parquet"), pq.read_table(folder / "chapters.parquet"),
            pq.read_table(folder / "book.parquet"))
