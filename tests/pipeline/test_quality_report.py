"""The quality report renders from an index laid out as pipeline.index writes it."""

from __future__ import annotations

import base64
import re
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.index import (BOOK_SCHEMA, CHAPTER_QUALITY_COLUMNS, CHAPTER_SCHEMA, SEGMENT_SCHEMA, IndexInfo, table_path,
                            with_chapter_quality, write_table)
from pipeline.quality import QualityOptions, chapter_summary, write_report

QUALITY_COLUMNS = ("similarity_to_reference", "similarity_to_run", "wer", "transcript", "quality_flags")
# An index written before the quality columns: the report still reads it.
OLD_SEGMENT_SCHEMA = pa.schema([f for f in SEGMENT_SCHEMA if f.name not in QUALITY_COLUMNS])
OLD_CHAPTER_SCHEMA = pa.schema([f for f in CHAPTER_SCHEMA if f.name not in CHAPTER_QUALITY_COLUMNS])
INFO = IndexInfo("OpenMOSS-Team/MOSS-TTS", "test", 24_000, -18.0, -1.5)
CHAPTERS = [(0, "Loomings", 12), (1, "The Carpet-Bag", 9), (2, "The Spouter-Inn", 15)]


def segment_rows(quality: bool) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for chapter_index, title, count in CHAPTERS:
        start = 0.0
        for k in range(count):
            length = float(rng.uniform(2, 6))
            row = {
                "book": "Moby-Dick", "chapter_index": chapter_index, "chapter_title": title, "segment_index": k,
                "paragraph_index": k // 3, "run_index": chapter_index, "language": "zh" if k == 5 else "en",
                "text": f"Call me Ishmael <{chapter_index}.{k}> & some years ago.", "model_text": "call me ishmael",
                "boundary": "sentence", "pause_s": None, "pause_after_s": 0.4, "key": f"k{chapter_index}-{k}",
                "seed": k, "attempts": 1, "flags": ["too_short"] if (chapter_index, k) == (0, 3) else [],
                "frames": int(length * 12.5), "est_frames": int(length * 12.5),
                "start_sample": int(start * 24_000), "end_sample": int((start + length) * 24_000),
                "start_s": start, "end_s": start + length,
                "chapter_file": f"chapters/{chapter_index + 1:02d} - {title}.flac", "prefix_key": None,
            }
            if quality:
                drifted = (chapter_index, k) == (2, 9)
                english = row["language"] == "en"
                row.update({
                    "similarity_to_reference": 0.45 if drifted else float(rng.uniform(0.78, 0.9)),
                    "similarity_to_run": None if k == 0 else (0.5 if drifted else float(rng.uniform(0.88, 0.97))),
                    "wer": (0.8 if (chapter_index, k) == (1, 4) else float(rng.uniform(0, 0.3))) if english else None,
                    "transcript": "call me is male" if english else None,
                    "quality_flags": ["similarity_below_floor"] if drifted else
                                     (["wer_above_threshold"] if (chapter_index, k) == (1, 4) else []),
                })
            rows.append(row)
            start += length + 0.4
    return rows


def write_small_index(output: Path, quality: bool) -> list[dict]:
    rows = segment_rows(quality)
    write_table(rows, table_path(output, "segments"), SEGMENT_SCHEMA if quality else OLD_SEGMENT_SCHEMA,
                INFO.metadata("segments"))
    chapters, position = [], 0.0
    for chapter_index, title, _ in CHAPTERS:
        duration = max(r["end_s"] + 0.4 for r in rows if r["chapter_index"] == chapter_index)
        chapters.append({
            "chapter_index": chapter_index, "title": title, "sample_rate_hz": 24_000,
            "num_samples": int(duration * 24_000), "duration_s": duration, "m4b_start_s": position,
            "flac_path": f"chapters/{chapter_index + 1:02d} - {title}.flac", "lossy_path": None, "srt_path": None,
            "vtt_path": None, "input_lufs": -20.0, "gain_db": 2.0, "limiter_reduction_db": 0.0, "near_silent": False,
            "flac_lufs": -18.0, "flac_true_peak_dbtp": -1.6, "lossy_lufs": None, "lossy_true_peak_dbtp": None,
            "lossy_passes": None,
        })
        position += duration
    if quality:
        write_table(with_chapter_quality(chapters, rows), table_path(output, "chapters"), CHAPTER_SCHEMA,
                    INFO.metadata("chapters"))
    else:
        write_table(chapters, table_path(output, "chapters"), OLD_CHAPTER_SCHEMA, INFO.metadata("chapters"))
    book = {
        "title": "Moby-Dick", "author": "Herman Melville", "language": "en", "source": "moby-dick.epub",
        "chapters": len(CHAPTERS), "segments": len(rows), "flagged": sum(bool(r["flags"]) for r in rows),
        "duration_s": position, "m4b_path": None, "m4b_lufs": None, "m4b_true_peak_dbtp": None, "m4b_passes": None,
        "loudness_target_lufs": -18.0, "true_peak_ceiling_dbtp": -1.5, "model_id": "OpenMOSS-Team/MOSS-TTS",
        "model_revision": "test", "tiny_random_model": False, "voice_id": "v", "decoding": "{}",
    }
    write_table([book], table_path(output, "book"), BOOK_SCHEMA, INFO.metadata("book"))
    return rows


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.players: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a":
            self.links.append(attrs["href"])
        elif tag == "audio":
            self.players.append(attrs["src"])
        elif tag in ("script", "link", "iframe"):
            self.scripts += 1


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_the_report_is_one_page_with_its_plots_and_the_flagged_segments(tmp_path):
    rows = write_small_index(tmp_path, quality=True)
    report = write_report(tmp_path, options=QualityOptions())
    assert report.html == tmp_path / "report.html" and report.segments == len(rows) and report.flagged == 3
    text = report.html.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    outside = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert page.scripts == 0 and "http" not in outside and "//" not in outside  # self-contained: nothing fetched
    assert len(page.images) == 2
    for src, path in zip(page.images, report.plots):
        assert src.startswith("data:image/png;base64,")
        inline = base64.b64decode(src.split(",", 1)[1])
        assert inline == path.read_bytes()  # the PNG beside the page is the one shown in it
        width, height = png_size(inline)
        assert width >= 600 and height >= 250
    assert [p.name for p in report.plots] == ["report_similarity.png", "report_wer.png"]
    # flagged: the checker's too_short, the drifted segment, the high-WER one; each links to its time
    assert page.links == ["chapters/01%20-%20Loomings.flac#t=" + f"{rows[3]['start_s']:.2f}",
                          "chapters/02%20-%20The%20Carpet-Bag.flac#t=" + f"{rows[12 + 4]['start_s']:.2f}",
                          "chapters/03%20-%20The%20Spouter-Inn.flac#t=" + f"{rows[21 + 9]['start_s']:.2f}"]
    assert page.players == page.links
    assert "too_short" in text and "similarity_below_floor" in text and "wer_above_threshold" in text
    assert "Call me Ishmael &lt;2.9&gt; &amp; some years ago." in text  # the text, escaped
    assert "heard: call me is male" in text
    assert "not in this index" not in text


def test_the_report_without_quality_columns_says_not_measured(tmp_path):
    write_small_index(tmp_path, quality=False)
    destination = tmp_path / "elsewhere" / "quality.html"
    report = write_report(tmp_path, destination)
    text = destination.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    assert report.flagged == 1 and len(page.images) == 2 and all(p.is_file() for p in report.plots)
    assert [p.name for p in report.plots] == ["quality_similarity.png", "quality_wer.png"]
    assert "not in this index: similarity_to_reference, similarity_to_run, wer, transcript, quality_flags" in text
    assert page.links == ["../chapters/01%20-%20Loomings.flac#t=" + re.search(r"#t=([\d.]+)", page.links[0]).group(1)]


def test_chapter_summary_gives_mean_worst_and_flagged_per_chapter(tmp_path):
    rows = segment_rows(quality=True)
    summary = chapter_summary(rows)
    assert [c["chapter_index"] for c in summary] == [0, 1, 2] and [c["segments"] for c in summary] == [12, 9, 15]
    assert summary[2]["similarity_worst"] == pytest.approx(0.45) and summary[1]["wer_worst"] == pytest.approx(0.8)
    assert [c["flagged"] for c in summary] == [1, 1, 1]
    english = [r["wer"] for r in rows if r["chapter_index"] == 0 and r["wer"] is not None]
    assert summary[0]["wer_mean"] == pytest.approx(np.mean(english))
    assert chapter_summary(segment_rows(quality=False))[0]["similarity_mean"] is None


def test_a_folder_without_an_index_is_an_error_that_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="segments.parquet is missing"):
        write_report(tmp_path)


def test_a_segment_table_alone_is_enough(tmp_path):
    """An index whose chapters and book tables are missing (a run that died before them): chapters
    are laid end to end by their last segment and the title comes from the segments."""
    write_small_index(tmp_path, quality=True)
    table_path(tmp_path, "chapters").unlink()
    table_path(tmp_path, "book").unlink()
    report = write_report(tmp_path)
    text = report.html.read_text(encoding="utf-8")
    assert "Quality report: Moby-Dick" in text and report.flagged == 3
    assert all(png_size(p.read_bytes())[0] >= 600 for p in report.plots)
