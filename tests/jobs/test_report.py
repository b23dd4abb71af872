"""job=report and the quality columns on a book narrated with the tiny checkpoint (quality measured,
not acted on: its noise would fail every check), and bad quality settings refused with exit 2."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.jobs.test_narrate_job import cli, config, overrides

pytestmark = pytest.mark.e2e  # real command, Ray and narration end to end: `make test-e2e`

BOOK = """# Report Book

## One

The tide came in at dawn, and the gulls were loud over the harbour.

## Two

Evening fell. The lamp was lit.
"""


@pytest.fixture(scope="module")
def narrated(voice_file, ray_local, tmp_path_factory) -> Path:
    from jobs.narrate import run

    book = tmp_path_factory.mktemp("book") / "report.md"
    book.write_text(BOOK, encoding="utf-8")
    output = tmp_path_factory.mktemp("run") / "out"
    run(config(*overrides(book, output, voice_file), "quality.wer_sample=1.0"))
    return output


@pytest.fixture(scope="module")
def voice_file(shared_data):
    path = shared_data / "voices" / "reference_en.m4a"
    transcript = next(line.split("\t", 1)[1] for line in (shared_data / "voices" / "transcripts.tsv").read_text().splitlines()
                      if line.startswith("reference_en.m4a"))
    return path, transcript


def test_the_index_carries_the_measures_and_tiny_is_not_acted_on(narrated):
    segments = pq.read_table(narrated / "index" / "segments" / "segments.parquet").to_pylist()
    chapters = pq.read_table(narrated / "index" / "chapters" / "chapters.parquet").to_pylist()
    assert segments and all(s["similarity_to_reference"] is not None for s in segments)
    for s in segments:
        assert (s["similarity_to_run"] is None) == (s["segment_index"] == 0)  # each chapter is one run here
        assert s["wer"] is not None and s["transcript"] is not None  # English, every segment in the sample
        assert s["quality_flags"] == [] and s["attempts"] == 1  # act: auto is off for model=tiny
    for c in chapters:
        assert c["similarity_mean"] is not None and c["similarity_worst"] <= c["similarity_mean"]
        assert c["wer_worst"] >= c["wer_mean"] >= 0 and c["quality_flagged"] == 0


def test_job_report_writes_a_page_with_its_plots(narrated, tmp_path):
    result = cli("job=report", f"output={narrated}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    page = narrated / "report.html"
    assert str(page) in result.stdout
    text = page.read_text(encoding="utf-8")
    images = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,([^']+)'>", text)
    assert [alt for alt, _ in images] == ["speaker similarity over the book", "WER distribution"]
    for _, data in images:
        png = base64.b64decode(data)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000  # a drawn plot, not an empty canvas
    for name in ("report_similarity.png", "report_wer.png"):
        assert (narrated / name).read_bytes().startswith(b"\x89PNG")
    assert "Report Book" in text and "tiny random-weight model" in text
    assert not re.search(r"(src|href)=['\"]https?:", text)  # opens offline


def test_write_book_report_is_what_narrate_ends_with(narrated, tmp_path):
    from jobs.config import quality_options, report_enabled
    from pipeline.quality.report import write_book_report

    assert report_enabled(config()) and not report_enabled(config("quality.report=false"))
    options = quality_options(config("model=tiny"), tiny=True)
    assert options is not None and not options.act
    report = write_book_report(narrated, options)
    assert report.html == narrated / "report.html" and report.html.is_file()
    with pytest.warns(UserWarning, match="was not written"):
        assert write_book_report(tmp_path / "nothing") is None  # a warning, never a failed narration


def test_report_without_a_finished_index_is_bad_input(narrated, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("job=report", f"output={empty}", cwd=tmp_path)
    assert result.returncode == 2 and "holds no index of a narrated book" in result.stderr
    unfinished = tmp_path / "unfinished"
    (unfinished / "index" / "segments").mkdir(parents=True)
    (unfinished / "index" / "segments" / "segments.parquet").write_bytes(
        (narrated / "index" / "segments" / "segments.parquet").read_bytes())
    result = cli("job=report", f"output={unfinished}", cwd=tmp_path)
    assert result.returncode == 2 and "the index is not finished" in result.stderr


@pytest.mark.parametrize("setting, expected", [
    ("quality.wer_sample=1.5", "quality.wer_sample=1.5: must be a number >= 0 and <= 1"),
    ("quality.asr=vosk", "quality.asr=vosk: valid choices: pocketsphinx, whisper"),
    ("quality.act=sometimes", "quality.act=sometimes: valid choices: auto, true, false"),
    ("quality.asr=whisper", "quality.asr_path=null: quality.asr=whisper needs the local folder"),
    ("quality.max_regenerations=-1", "quality.max_regenerations=-1: must be a whole number >= 0"),
])
def test_bad_quality_settings_exit_2_naming_the_key(setting, expected, tmp_path):
    result = cli("job=report", f"output={tmp_path}", setting, cwd=tmp_path)
    assert result.returncode == 2 and expected in result.stderr, result.stderr
