"""Input rows, streamed: JSONL, CSV/TSV, Parquet or plain text (one utterance a line), a file or a folder."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InputError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet",
           ".txt": "text"}


@dataclass(frozen=True)
class InputRow:
    place: str  # "file:line" (or "file:row"), for rejects and errors
    fields: dict[str, Any] | None  # None: the row could not be parsed (see `problem`)
    problem: str = ""


def input_files(path: str | Path) -> list[Path]:
    """The files to read: the file itself, or every supported file of a folder in name order."""
    source = Path(str(path)).expanduser()
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in FORMATS)
        if not files:
            raise InputError(str(source), "", "the folder holds no input file",
                             f"put {', '.join(sorted(FORMATS))} files in it, or pass input=FILE")
        return files
    if not source.is_file():
        raise InputError(str(source), "", "the input does not exist", "pass input= a file or folder of texts")
    if source.suffix.lower() not in FORMATS:
        raise InputError(str(source), "", f"unsupported input type {source.suffix!r}",
                         f"use one of {', '.join(sorted(FORMATS))} (plain text: one utterance a line)")
    return [source]


def check_readable(files: list[Path]) -> None:
    """Open every file and read its start, so an unreadable input fails before any model loads."""
    for file in files:
        try:
            if FORMATS[file.suffix.lower()] == "parquet":
                import pyarrow.parquet as pq

                names = pq.ParquetFile(file).schema_arrow.names
                if "text" not in names:
                    raise InputError(str(file), "schema", f"no 'text' column (columns: {', '.join(names)})",
                                     "name the column holding the utterances 'text'")
            else:
                with file.open("r", encoding="utf-8-sig") as handle:
                    first = handle.readline()
                if FORMATS[file.suffix.lower()] in ("csv", "tsv"):
                    delimiter = "\t" if FORMATS[file.suffix.lower()] == "tsv" else ","
                    header = next(csv.reader([first], delimiter=delimiter), [])
                    if "text" not in header:
                        raise InputError(str(file), "line 1", f"no 'text' column in the header ({', '.join(header)})",
                                         "add a header line naming the utterance column 'text'")
        except UnicodeDecodeError as error:
            raise InputError(str(file), "", f"not UTF-8 text ({error.reason})", "save the file as UTF-8") from error
        except OSError as error:
            raise InputError(str(file), "", f"cannot be read ({error.strerror or error})",
                             "check the path and its permissions") from error
        except InputError:
            raise
        except Exception as error:  # a corrupt Parquet file
            raise InputError(str(file), "", f"cannot be read ({error})", "rewrite the file") from error


def read_rows(path: str | Path) -> Iterator[InputRow]:
    """Every row of the input, in order, one at a time (never the whole input in memory)."""
    for file in input_files(path):
        kind = FORMATS[file.suffix.lower()]
        if kind == "jsonl":
            yield from _jsonl(file)
        elif kind in ("csv", "tsv"):
            yield from _csv(file, "\t" if kind == "tsv" else ",")
        elif kind == "parquet":
            yield from _parquet(file)
        else:
            yield from _text(file)


def _jsonl(file: Path) -> Iterator[InputRow]:
    with file.open("r", encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            place = f"{file.name}:{number}"
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                yield InputRow(place, None, f"not valid JSON ({error.msg} at column {error.colno})")
                continue
            if not isinstance(value, dict):
                yield InputRow(place, None, "a JSON line must be an object with a 'text' field")
                continue
            yield InputRow(place, value)


def _csv(file: Path, delimiter: str) -> Iterator[InputRow]:
    with file.open("r", encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        for row in reader:
            fields = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
            yield InputRow(f"{file.name}:{reader.line_num}", fields)


def _parquet(file: Path) -> Iterator[InputRow]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(file).iter_batches(batch_size=1024):
        for fields in batch.to_pylist():
            number += 1
            yield InputRow(f"{file.name}:row {number}", {k: v for k, v in fields.items() if v is not None})


def _text(file: Path) -> Iterator[InputRow]:
    with file.open("r", encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield InputRow(f"{file.name}:{number}", {"text": line.strip()})
