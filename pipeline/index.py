"""The book's index: Parquet tables that say where every sentence sits.

    <output>/index/segments/segments.parquet  one row per segment
    <output>/index/chapters/chapters.parquet  one row per chapter
    <output>/index/book/book.parquet          one row: the book, written last

One folder per table, so ``datasets.load_dataset("parquet", data_dir=<output>/index/<table>)``
loads each. The schemas are fixed here (``SEGMENT_SCHEMA``, ``CHAPTER_SCHEMA``,
``BOOK_SCHEMA``): units are in the column names (``_s`` seconds, ``_samples``, ``_hz``,
``_lufs``, ``_dbtp``, ``_db``), file paths are relative to the output folder (a copied
output stays whole), and every table carries metadata: the tool's version, the model and
its revision, the sample rate, the loudness target and the true-peak ceiling.

Each table is written to a temporary file in its folder, flushed to disk and renamed over the
old one (``write_atomically``): a reader never sees part of a table. The book table is the
completion marker: removed first and written last, so a run that died half-way never leaves an
index that looks complete.

Quality (``pipeline.quality``, when the narrator measured it): each segment row carries its
speaker similarity to the voice reference and to the earlier segments of its run (Resemblyzer
cosines, 0..1, higher is closer), its WER and the transcript it was judged by (English segments
in the WER sample), and the quality checks it still failed when kept (``quality_flags``); null
where not measured. Each chapter row summarizes them: mean and worst (lowest) similarity to the
reference, mean and worst (highest) WER, and how many segments carry quality flags.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

INDEX_DIR = "index"
TABLES = ("segments", "chapters", "book")

SEGMENT_SCHEMA = pa.schema([
    pa.field("book", pa.string(), nullable=False),
    pa.field("chapter_index", pa.int32(), nullable=False),
    pa.field("chapter_title", pa.string(), nullable=False),
    pa.field("segment_index", pa.int32(), nullable=False),  # within the chapter
    pa.field("paragraph_index", pa.int32(), nullable=False),  # within the chapter
    pa.field("run_index", pa.int32(), nullable=True),  # the plan's run, when the plan has runs
    pa.field("language", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("model_text", pa.string(), nullable=False),
    pa.field("boundary", pa.string(), nullable=False),  # clause | sentence | paragraph | chapter
    pa.field("pause_s", pa.float64(), nullable=True),  # explicit [pause] after it; null: the boundary's
    pa.field("pause_after_s", pa.float64(), nullable=False),  # silence actually inserted after it
    pa.field("key", pa.string(), nullable=False),
    pa.field("seed", pa.int64(), nullable=False),
    pa.field("attempts", pa.int32(), nullable=False),
    pa.field("flags", pa.list_(pa.string()), nullable=False),
    pa.field("frames", pa.int32(), nullable=False),
    pa.field("est_frames", pa.int32(), nullable=False),
    pa.field("start_sample", pa.int64(), nullable=False),  # in the chapter file
    pa.field("end_sample", pa.int64(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("chapter_file", pa.string(), nullable=False),  # the FLAC master, relative to the output
    pa.field("prefix_key", pa.string(), nullable=True),  # the segment carried as its prefix
    pa.field("similarity_to_reference", pa.float64(), nullable=True),  # speaker cosine; null: not measured
    pa.field("similarity_to_run", pa.float64(), nullable=True),  # to its run's earlier segments; null for a run's first
    pa.field("wer", pa.float64(), nullable=True),  # word error rate; null: not in the sample, or a language not heard
    pa.field("transcript", pa.string(), nullable=True),  # what the recognizer heard
    pa.field("quality_flags", pa.list_(pa.string()), nullable=False),  # quality checks the kept attempt failed
])

CHAPTER_SCHEMA = pa.schema([
    pa.field("chapter_index", pa.int32(), nullable=False),
    pa.field("title", pa.string(), nullable=False),
    pa.field("sample_rate_hz", pa.int32(), nullable=False),
    pa.field("num_samples", pa.int64(), nullable=False),
    pa.field("duration_s", pa.float64(), nullable=False),
    pa.field("m4b_start_s", pa.float64(), nullable=True),  # where the chapter starts in the M4B
    pa.field("flac_path", pa.string(), nullable=False),
    pa.field("lossy_path", pa.string(), nullable=True),
    pa.field("srt_path", pa.string(), nullable=True),
    pa.field("vtt_path", pa.string(), nullable=True),
    pa.field("input_lufs", pa.float64(), nullable=False),  # the stitched chapter before any gain
    pa.field("gain_db", pa.float64(), nullable=False),
    pa.field("limiter_reduction_db", pa.float64(), nullable=False),
    pa.field("near_silent", pa.bool_(), nullable=False),  # not boosted
    pa.field("flac_lufs", pa.float64(), nullable=False),  # measured on the delivered file
    pa.field("flac_true_peak_dbtp", pa.float64(), nullable=False),
    pa.field("lossy_lufs", pa.float64(), nullable=True),  # measured on the delivered file
    pa.field("lossy_true_peak_dbtp", pa.float64(), nullable=True),
    pa.field("lossy_passes", pa.int32(), nullable=True),  # encodes it took to pass
    pa.field("similarity_mean", pa.float64(), nullable=True),  # of its segments' similarity to the reference
    pa.field("similarity_worst", pa.float64(), nullable=True),  # the lowest
    pa.field("wer_mean", pa.float64(), nullable=True),
    pa.field("wer_worst", pa.float64(), nullable=True),  # the highest
    pa.field("quality_flagged", pa.int32(), nullable=False),  # segments with quality flags
])

BOOK_SCHEMA = pa.schema([
    pa.field("title", pa.string(), nullable=False),
    pa.field("author", pa.string(), nullable=True),
    pa.field("language", pa.string(), nullable=True),
    pa.field("source", pa.string(), nullable=False),
    pa.field("chapters", pa.int32(), nullable=False),
    pa.field("segments", pa.int32(), nullable=False),
    pa.field("flagged", pa.int32(), nullable=False),  # segments with flags or quality flags
    pa.field("duration_s", pa.float64(), nullable=False),
    pa.field("m4b_path", pa.string(), nullable=True),
    pa.field("m4b_lufs", pa.float64(), nullable=True),  # measured on the delivered file
    pa.field("m4b_true_peak_dbtp", pa.float64(), nullable=True),
    pa.field("m4b_passes", pa.int32(), nullable=True),
    pa.field("loudness_target_lufs", pa.float64(), nullable=False),
    pa.field("true_peak_ceiling_dbtp", pa.float64(), nullable=False),
    pa.field("model_id", pa.string(), nullable=False),
    pa.field("model_revision", pa.string(), nullable=False),
    pa.field("tiny_random_model", pa.bool_(), nullable=False),
    pa.field("voice_id", pa.string(), nullable=False),
    pa.field("decoding", pa.string(), nullable=False),  # JSON
])

SCHEMAS = {"segments": SEGMENT_SCHEMA, "chapters": CHAPTER_SCHEMA, "book": BOOK_SCHEMA}


@dataclass(frozen=True)
class IndexInfo:
    """What every table's metadata records."""

    model_id: str
    model_revision: str
    sample_rate_hz: int
    loudness_target_lufs: float
    true_peak_ceiling_dbtp: float

    def metadata(self, table: str) -> dict[bytes, bytes]:
        try:
            version = package_metadata.version("moss-narrator")
        except package_metadata.PackageNotFoundError:
            version = "unknown"
        values = {"table": table, "tool": "moss-narrator", "tool_version": version, "model_id": self.model_id,
                  "model_revision": self.model_revision, "sample_rate_hz": str(self.sample_rate_hz),
                  "loudness_target_lufs": str(self.loudness_target_lufs),
                  "true_peak_ceiling_dbtp": str(self.true_peak_ceiling_dbtp)}
        return {f"moss_narrator.{k}".encode(): str(v).encode() for k, v in values.items()}


def relative(path: str | Path | None, output: Path) -> str | None:
    """``path`` relative to ``output`` (POSIX separators), for an index that survives a copy."""
    if path is None:
        return None
    return Path(os.path.relpath(Path(path).resolve(), Path(output).resolve())).as_posix()


def table_path(output: Path, table: str) -> Path:
    return Path(output) / INDEX_DIR / table / f"{table}.parquet"


def write_atomically(path: Path, write: Callable[[Path], Any]) -> Path:
    """``write(temporary)`` into a temporary file beside ``path``, flushed to disk, then renamed over
    ``path`` in one step: a reader (or a run killed half-way) sees the old file or the new one,
    never a part. A failed write leaves the old file as it was and removes the temporary one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    try:
        write(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (where the platform allows opening a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_table(rows: list[dict[str, Any]], path: Path, schema: pa.Schema, metadata: Mapping[bytes, bytes]) -> Path:
    """Rows as a Parquet file of exactly ``schema`` (missing or extra columns are an error), written atomically."""
    names = set(schema.names)
    for number, row in enumerate(rows):
        if set(row) != names:
            missing, extra = sorted(names - set(row)), sorted(set(row) - names)
            raise ValueError(f"{path.name} row {number} does not fit the schema: missing {missing}, extra {extra}")
    table = pa.Table.from_pylist(rows, schema=schema).replace_schema_metadata(dict(metadata))
    return write_atomically(path, lambda temporary: pq.write_table(table, temporary))


def write_index(
    output: Path,
    segment_rows: list[dict[str, Any]],
    chapter_rows: list[dict[str, Any]],
    book_row: dict[str, Any],
    info: IndexInfo,
) -> Path:
    output = Path(output)
    folder = output / INDEX_DIR
    table_path(output, "book").unlink(missing_ok=True)  # the old run's index is no longer complete
    for table in TABLES:  # left by a run killed mid-write (readers never open them)
        for partial in (folder / table).glob(".*.partial"):
            partial.unlink(missing_ok=True)
    write_table(segment_rows, table_path(output, "segments"), SEGMENT_SCHEMA, info.metadata("segments"))
    chapter_rows = with_chapter_quality(chapter_rows, segment_rows)
    write_table(chapter_rows, table_path(output, "chapters"), CHAPTER_SCHEMA, info.metadata("chapters"))
    row = {k: (json.dumps(v, sort_keys=True) if isinstance(v, dict) else v) for k, v in book_row.items()}
    write_table([row], table_path(output, "book"), BOOK_SCHEMA, info.metadata("book"))
    return folder


def read_table(path: Path) -> pa.Table:
    """One table, read through one open file: a table replaced meanwhile cannot mix into it (a
    path handed to Parquet may be opened more than once, and the second open sees the new file)."""
    with open(path, "rb") as file:
        return pq.read_table(file)


# --- rows --------------------------------------------------------------------------------


def book_row(
    book: Any,
    *,
    language: str | None,
    chapters: Sequence[Any],
    segments: int,
    flagged: int,
    m4b: Any,
    output: Path,
    loudness_target_lufs: float,
    true_peak_ceiling_dbtp: float,
    model_id: str,
    model_revision: str,
    tiny_random_model: bool,
    voice_id: str,
    decoding: Any,
) -> dict[str, Any]:
    """The book table's one row. ``book`` is the manuscript (``reading.Book``: title, author,
    source), ``chapters`` the finished chapters, ``m4b`` the written M4B (``finish``'s result) or
    None, ``decoding`` the decoding parameters (a dataclass or a mapping, stored as JSON)."""
    return {
        "title": book.title,
        "author": book.author or None,
        "language": language,
        "source": book.source,
        "chapters": len(chapters),
        "segments": segments,
        "flagged": flagged,
        "duration_s": sum(c.duration_s for c in chapters),
        "m4b_path": None if m4b is None else relative(m4b.path, output),
        "m4b_lufs": None if m4b is None else m4b.lufs,
        "m4b_true_peak_dbtp": None if m4b is None else m4b.true_peak_dbtp,
        "m4b_passes": None if m4b is None else m4b.passes,
        "loudness_target_lufs": loudness_target_lufs,
        "true_peak_ceiling_dbtp": true_peak_ceiling_dbtp,
        "model_id": model_id,
        "model_revision": model_revision,
        "tiny_random_model": tiny_random_model,
        "voice_id": voice_id,
        "decoding": decoding if isinstance(decoding, Mapping) else asdict(decoding),
    }


def chapter_rows(finished: Sequence[Any], output: Path) -> list[dict[str, Any]]:
    """One row per ``finish.FinishedChapter``, in the order given (the M4B's order)."""
    rows, position = [], 0
    for chapter in finished:
        flac, lossy = chapter.flac, chapter.lossy
        rows.append({
            "chapter_index": chapter.chapter_index,
            "title": chapter.title,
            "sample_rate_hz": chapter.sample_rate,
            "num_samples": chapter.num_samples,
            "duration_s": chapter.num_samples / chapter.sample_rate,
            "m4b_start_s": position / chapter.sample_rate,
            "flac_path": relative(chapter.flac_path, output),
            "lossy_path": relative(chapter.lossy_path, output),
            "srt_path": relative(chapter.srt_path, output),
            "vtt_path": relative(chapter.vtt_path, output),
            "input_lufs": chapter.input_lufs,
            "gain_db": chapter.gain_db,
            "limiter_reduction_db": chapter.limiter_reduction_db,
            "near_silent": chapter.near_silent,
            "flac_lufs": chapter.output_lufs if flac is None else flac.lufs,
            "flac_true_peak_dbtp": chapter.true_peak_dbtp if flac is None else flac.true_peak_dbtp,
            "lossy_lufs": None if lossy is None else lossy.lufs,
            "lossy_true_peak_dbtp": None if lossy is None else lossy.true_peak_dbtp,
            "lossy_passes": None if lossy is None else lossy.passes,
        })
        position += chapter.num_samples
    return rows


CHAPTER_QUALITY_COLUMNS = ("similarity_mean", "similarity_worst", "wer_mean", "wer_worst", "quality_flagged")


def _finite(values: list[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def chapter_quality(segment_rows: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per chapter index: the chapter table's quality columns from its segments' rows."""
    by_chapter: dict[int, list[Mapping[str, Any]]] = {}
    for row in segment_rows:
        by_chapter.setdefault(int(row["chapter_index"]), []).append(row)
    summary = {}
    for chapter_index, rows in by_chapter.items():
        similarity = _finite([r.get("similarity_to_reference") for r in rows])
        wer = _finite([r.get("wer") for r in rows])
        summary[chapter_index] = {
            "similarity_mean": sum(similarity) / len(similarity) if similarity else None,
            "similarity_worst": min(similarity) if similarity else None,
            "wer_mean": sum(wer) / len(wer) if wer else None,
            "wer_worst": max(wer) if wer else None,
            "quality_flagged": sum(bool(r.get("quality_flags")) for r in rows),
        }
    return summary


def with_chapter_quality(chapter_rows: Sequence[dict[str, Any]],
                         segment_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Chapter rows with their quality columns filled from the segment rows (a row that has them
    already keeps its own)."""
    summary = chapter_quality(segment_rows)
    empty = {"similarity_mean": None, "similarity_worst": None, "wer_mean": None, "wer_worst": None,
             "quality_flagged": 0}
    filled = []
    for row in chapter_rows:
        if all(column in row for column in CHAPTER_QUALITY_COLUMNS):
            filled.append(dict(row))
        else:
            filled.append({**row, **summary.get(int(row["chapter_index"]), empty)})
    return filled


def book_language(declared: str | None, segment_languages: Sequence[str]) -> str | None:
    """The book's declared language, else the language most of its segments are in."""
    if declared:
        return declared
    counts = Counter(language for language in segment_languages if language)
    return counts.most_common(1)[0][0] if counts else None


def segment_rows(
    plan_segments: Sequence[Any],
    stored: Callable[[str], tuple[Mapping[str, Any], int]],
    finished: Sequence[Any],
    output: Path,
    book_title: str,
) -> tuple[list[dict[str, Any]], int]:
    """One row per planned segment (``plan.PlanSegment``), in plan order, and how many are
    flagged. ``stored(key)`` gives a stored segment's facts and frame count; ``finished``
    (``finish.FinishedChapter``) where each segment sits in its chapter file. A segment counts as
    flagged when its own checks or its quality checks failed."""
    timing = {(row["chapter_index"], row["segment_index"]): row for c in finished for row in c.segments}
    files = {c.chapter_index: relative(c.flac_path, output) for c in finished}
    rows, flagged = [], 0
    positions: dict[int, int] = {}
    for segment in plan_segments:
        position = positions.get(segment.chapter_index, 0)
        positions[segment.chapter_index] = position + 1
        facts, frames = stored(segment.key)
        times = timing[(segment.chapter_index, position)]
        flags = [str(flag) for flag in facts.get("flags") or []]
        quality_flags = [str(flag) for flag in facts.get("quality_flags") or []]
        flagged += bool(flags or quality_flags)
        run_index = getattr(segment, "run_index", None)
        rows.append({
            "book": book_title,
            "chapter_index": segment.chapter_index,
            "chapter_title": segment.chapter_title,
            "segment_index": segment.segment_index,
            "paragraph_index": segment.paragraph_index,
            "run_index": None if run_index is None else int(run_index),
            "language": segment.language,
            "text": segment.text,
            "model_text": segment.model_text,
            "boundary": segment.boundary,
            "pause_s": segment.pause_s,
            "pause_after_s": times["pause_after_s"],
            "key": segment.key,
            "seed": int(facts["seed"]),
            "attempts": int(facts["attempts"]),
            "flags": flags,
            "frames": int(frames),
            "est_frames": segment.est_frames,
            "start_sample": times["start_sample"],
            "end_sample": times["end_sample"],
            "start_s": times["start_s"],
            "end_s": times["end_s"],
            "chapter_file": files[segment.chapter_index],
            "prefix_key": facts.get("prefix_key"),
            "similarity_to_reference": _optional_float(facts.get("similarity_to_reference")),
            "similarity_to_run": _optional_float(facts.get("similarity_to_run")),
            "wer": _optional_float(facts.get("wer")),
            "transcript": facts.get("transcript"),
            "quality_flags": quality_flags,
        })
    return rows, flagged


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
