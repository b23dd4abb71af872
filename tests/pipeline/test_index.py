"""The index: fixed schemas, relative paths, metadata, and tables that other tools load
(``datasets.load_dataset("parquet", data_dir=...)`` per table, DuckDB, pyarrow)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile

from pipeline import index
from pipeline.finishing.finish import FinishOptions, SegmentSpan, finish_book, finish_chapter

RATE = 24_000


def read_tables(output: Path) -> tuple[pa.Table, ...]:
    """(segments, chapters, book), each read by its own name as readers of the index read them."""
    return tuple(index.read_table(index.table_path(output, name)) for name in index.TABLES)
pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="FFmpeg not installed")


@dataclass(frozen=True)
class PlannedSegment:  # the fields of pipeline.text.plan.PlanSegment that the index reads
    chapter_index: int
    chapter_title: str
    segment_index: int
    paragraph_index: int
    text: str
    model_text: str
    boundary: str
    est_frames: int
    language: str
    key: str
    pause_s: float | None = None


TEXTS = [["First sentence here.", "Second one, [pause 0.8s]", "Third."], ["另一章的第一句。", "The end."]]
# Chapter 1 was measured (its second segment kept with a quality flag); chapter 2 was not.
QUALITY = {
    "k00": {"similarity_to_reference": 0.8, "similarity_to_run": None, "wer": 0.0, "transcript": "first sentence here",
            "quality_flags": []},
    "k01": {"similarity_to_reference": 0.5, "similarity_to_run": 0.6, "wer": 0.5, "transcript": "second",
            "quality_flags": ["similarity_below_floor"]},
    "k02": {"similarity_to_reference": 0.9, "similarity_to_run": 0.7, "wer": None, "transcript": None,
            "quality_flags": []},
}


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    options = FinishOptions(lossy_format="opus", write_m4b=True)
    rng = np.random.default_rng(0)
    finished, planned = [], []
    for c, texts in enumerate(TEXTS):
        n = len(texts)
        audio = (0.1 * rng.standard_normal(n * RATE)).astype(np.float32)
        kinds = ["sentence"] * (n - 1) + ["chapter"]
        pauses = [0.8 if "[pause" in t else None for t in texts]
        spans = [SegmentSpan(i * RATE, (i + 1) * RATE, t, kinds[i], pauses[i], f"k{c}{i}") for i, t in enumerate(texts)]
        finished.append(finish_chapter(audio, spans, out / "chapters", c, f"Chapter {c + 1}", options))
        planned += [PlannedSegment(c, f"Chapter {c + 1}", i, i // 2, t, t, kinds[i], 75,
                                   "zh" if "章" in t else "en", f"k{c}{i}", pauses[i]) for i, t in enumerate(texts)]
    m4b = finish_book(finished, out / "book.m4b", "Book", options=options)
    facts = {p.key: ({"seed": 7, "attempts": 1, "flags": ["too_long"] if p.key == "k01" else [],
                      "prefix_key": None, **QUALITY.get(p.key, {})}, 12) for p in planned}
    segments, flagged = index.segment_rows(planned, facts.__getitem__, finished, out, "Book")
    book = {"title": "Book", "author": None, "language": index.book_language(None, [p.language for p in planned]),
            "source": "book.md", "chapters": 2, "segments": len(planned), "flagged": flagged, "duration_s": 5.0,
            "m4b_path": index.relative(m4b.path, out), "m4b_lufs": m4b.lufs, "m4b_true_peak_dbtp": m4b.true_peak_dbtp,
            "m4b_passes": m4b.passes, "loudness_target_lufs": -18.0, "true_peak_ceiling_dbtp": -1.0,
            "model_id": "tiny", "model_revision": "abc", "tiny_random_model": True, "voice_id": "v",
            "decoding": {"temperature": 1.0}}
    info = index.IndexInfo("tiny", "abc", RATE, -18.0, -1.0)
    index.write_index(out, segments, index.chapter_rows(finished, out), book, info)
    return out


def test_tables_have_the_declared_schemas_and_metadata(output):
    segments, chapters, book = read_tables(output)
    for table, schema in ((segments, index.SEGMENT_SCHEMA), (chapters, index.CHAPTER_SCHEMA), (book, index.BOOK_SCHEMA)):
        assert table.schema.remove_metadata().equals(schema)
        meta = table.schema.metadata
        assert meta[b"moss_narrator.model_id"] == b"tiny" and meta[b"moss_narrator.sample_rate_hz"] == b"24000"
        assert meta[b"moss_narrator.tool_version"] and meta[b"moss_narrator.true_peak_ceiling_dbtp"] == b"-1.0"
    assert segments.schema.field("flags").type == pa.list_(pa.string())
    assert segments.schema.field("chapter_index").type == pa.int32()  # as in the plan
    rows = segments.to_pylist()
    assert [r["flags"] for r in rows][:2] == [[], ["too_long"]] and book.to_pylist()[0]["flagged"] == 1
    assert [r["language"] for r in rows] == ["en", "en", "en", "zh", "en"]
    assert [r["pause_s"] for r in rows] == [None, 0.8, None, None, None]
    assert rows[1]["pause_after_s"] == 0.8 and rows[0]["pause_after_s"] == 0.45  # the sentence default
    assert json.loads(book.to_pylist()[0]["decoding"]) == {"temperature": 1.0}


def test_quality_columns_come_from_the_facts_and_sum_up_per_chapter(output):
    segments, chapters, _ = read_tables(output)
    rows = segments.to_pylist()
    assert [r["similarity_to_reference"] for r in rows] == [0.8, 0.5, 0.9, None, None]
    assert [r["similarity_to_run"] for r in rows] == [None, 0.6, 0.7, None, None]
    assert [r["wer"] for r in rows] == [0.0, 0.5, None, None, None]
    assert [r["transcript"] for r in rows] == ["first sentence here", "second", None, None, None]
    assert [r["quality_flags"] for r in rows] == [[], ["similarity_below_floor"], [], [], []]
    first, second = chapters.to_pylist()
    assert first["similarity_mean"] == pytest.approx(2.2 / 3) and first["similarity_worst"] == 0.5
    assert first["wer_mean"] == 0.25 and first["wer_worst"] == 0.5 and first["quality_flagged"] == 1
    assert [second[c] for c in ("similarity_mean", "similarity_worst", "wer_mean", "wer_worst")] == [None] * 4
    assert second["quality_flagged"] == 0


def test_paths_are_relative_and_survive_a_copy(output, tmp_path):
    copy = tmp_path / "moved"
    shutil.copytree(output, copy)
    shutil.rmtree(output / "chapters", ignore_errors=False)  # the original is gone...
    try:
        segments, chapters, book = read_tables(copy)
        for row in chapters.to_pylist():
            assert not row["flac_path"].startswith("/") and row["flac_path"].startswith("chapters/")
            audio, rate = soundfile.read(copy / row["flac_path"])  # ...and the copy is whole
            assert len(audio) == row["num_samples"] and (copy / row["lossy_path"]).is_file()
            assert (copy / row["srt_path"]).is_file() and (copy / row["vtt_path"]).is_file()
        assert all((copy / r["chapter_file"]).is_file() for r in segments.to_pylist())
        assert (copy / book.to_pylist()[0]["m4b_path"]).is_file()
    finally:
        shutil.copytree(copy / "chapters", output / "chapters")


def test_each_table_loads_with_datasets(output):
    datasets = pytest.importorskip("datasets")
    for name, count in (("segments", 5), ("chapters", 2), ("book", 1)):
        loaded = datasets.load_dataset("parquet", data_dir=str(output / "index" / name), split="train")
        assert loaded.num_rows == count
        assert set(loaded.column_names) == set(index.SCHEMAS[name].names)
    segments = datasets.load_dataset("parquet", data_dir=str(output / "index" / "segments"), split="train")
    assert segments[1]["flags"] == ["too_long"] and segments[3]["text"] == "另一章的第一句。"


def test_each_table_loads_with_duckdb(output):
    folder = output / "index"
    con = duckdb.connect()
    count, flagged = con.execute(
        f"SELECT count(*), sum(len(flags)) FROM read_parquet('{folder}/segments/*.parquet')").fetchone()
    assert (count, flagged) == (5, 1)
    joined = con.execute(
        f"SELECT c.title, count(*), max(s.end_s) <= max(c.duration_s) FROM read_parquet('{folder}/segments/*.parquet') s "
        f"JOIN read_parquet('{folder}/chapters/*.parquet') c USING (chapter_index) GROUP BY c.title ORDER BY c.title"
    ).fetchall()
    assert joined == [("Chapter 1", 3, True), ("Chapter 2", 2, True)]
    peak, ceiling = con.execute(
        f"SELECT m4b_true_peak_dbtp, true_peak_ceiling_dbtp FROM read_parquet('{folder}/book/*.parquet')").fetchone()
    assert peak <= ceiling


def test_chapter_rows_report_the_delivered_files(output):
    chapters = pq.read_table(index.table_path(output, "chapters")).to_pylist()
    start = 0.0
    for row in chapters:
        assert row["flac_true_peak_dbtp"] <= -1.0 and row["lossy_true_peak_dbtp"] <= -1.0
        assert abs(row["flac_lufs"] + 18.0) <= 0.5 and abs(row["lossy_lufs"] + 18.0) <= 0.5
        assert row["lossy_passes"] >= 1 and row["m4b_start_s"] == pytest.approx(start)
        start += row["duration_s"]


def test_a_row_that_does_not_fit_the_schema_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"does not fit the schema: missing \['duration_s'.*'title'"):
        index.write_table([{"chapter_index": 0}], tmp_path / "c.parquet", index.CHAPTER_SCHEMA, {})
