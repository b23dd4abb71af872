"""The M4B joined from per-chapter AAC streams by stream copy: chapter markers, duration and
where each chapter's audio really decodes, checked against the index (the sum of the
preceding chapters' lengths) with FFprobe and by decoding the book."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile

from pipeline.finishing import export
from pipeline.finishing.finish import FinishedChapter, FinishOptions, SegmentSpan, finish_book, finish_chapter
from pipeline.finishing.stitch import PauseOptions

RATE = 24_000
pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="FFmpeg not installed")

OPTIONS = FinishOptions(pauses=PauseOptions(lead_in_s=0.5, chapter_s=1.0), lossy_format=None, subtitles=None)


def probe(path: str | Path) -> dict:
    result = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-show_chapters", "-of",
                             "json", str(path)], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def decode(path: str | Path) -> np.ndarray:
    return np.concatenate(list(export.decode_pcm(path)))


def voiced(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 120 + 40 * seed
    x = sum(0.5**k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t + seed) ** 2
    return (0.2 * envelope * x + 0.01 * rng.standard_normal(n)).astype(np.float32)


def lag_of(book: np.ndarray, master: np.ndarray, at: int) -> int:
    """Where ``master``'s first voiced second sits in ``book`` relative to ``at`` (samples)."""
    voiced_start = int(np.flatnonzero(master)[0])
    probe_piece = master[voiced_start:voiced_start + RATE]
    padded = np.concatenate([np.zeros(4096, np.float32), book])
    window = padded[at + voiced_start:at + voiced_start + RATE + 2 * 4096]
    scores = np.correlate(window, probe_piece, "valid")
    return int(np.argmax(scores)) - 4096


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    out = tmp_path_factory.mktemp("joined")
    finished = []
    for index, seconds in enumerate((7.3, 4.111, 9.02)):  # lengths that are no multiple of a frame
        audio = voiced(seconds, index)
        segments = [SegmentSpan(0, len(audio) // 2, "One.", "sentence", key=f"{index}a"),
                    SegmentSpan(len(audio) // 2, len(audio), "Two.", "chapter", key=f"{index}b")]
        finished.append(finish_chapter(audio, segments, out, index, f"Chapter {index + 1}", OPTIONS))
    parts = [c.m4b_part for c in finished]
    m4b = finish_book(finished, out / "book.m4b", "Joined", "Someone", options=OPTIONS)
    return finished, parts, m4b


def test_chapters_are_whole_frames_and_carry_their_aac_stream(joined):
    finished, parts, _ = joined
    for chapter, part in zip(finished, parts):
        assert chapter.num_samples % export.AAC_FRAME == 0
        assert part is not None and part.head_trim == export.AAC_FRAME
        assert part.frames * export.AAC_FRAME == chapter.num_samples  # the stream fills its span exactly
        assert chapter.m4b_part_figures.true_peak_dbtp <= OPTIONS.true_peak_db - OPTIONS.peak_guard_db
    assert not any(Path(p.path).exists() for p in parts)  # the streams are gone once joined


def test_markers_and_duration_match_the_index(joined):
    finished, _, m4b = joined
    info = probe(m4b.path)
    assert info["format"]["tags"]["major_brand"].strip() == "M4B"
    position = 0
    for chapter, marker in zip(finished, info["chapters"]):
        assert float(marker["start_time"]) == pytest.approx(position / RATE, abs=0.0011)
        position += chapter.num_samples
        assert float(marker["end_time"]) == pytest.approx(position / RATE, abs=0.0011)
    assert float(info["format"]["duration"]) == pytest.approx(position / RATE, abs=0.0011)
    errors = subprocess.run(["ffmpeg", "-v", "error", "-i", m4b.path, "-f", "null", "-"],
                            capture_output=True, text=True, check=True).stderr
    assert errors == ""


def test_every_chapter_decodes_where_the_index_says(joined):
    finished, _, m4b = joined
    book = decode(m4b.path)
    assert len(book) == sum(c.num_samples for c in finished)
    position = 0
    for chapter in finished:
        master, _ = soundfile.read(chapter.flac_path, dtype="float32")
        assert lag_of(book, master, position) == 0
        position += chapter.num_samples


def test_chapters_finished_elsewhere_get_their_stream_in_finish_book(tmp_path):
    """Masters of any length (not whole frames): the streams made here leave out as much
    leading silence as keeps every chapter at the sum of the preceding lengths."""
    finished = []
    for index, seconds in enumerate((3.3337, 2.05, 4.5001)):
        audio = np.concatenate([np.zeros(RATE // 2, np.float32), voiced(seconds, index), np.zeros(RATE, np.float32)])
        audio *= np.float32(10 ** (-6 / 20))
        path = export.write_flac(tmp_path / f"c{index}.flac", audio, RATE)
        finished.append(FinishedChapter(
            chapter_index=index, title=f"C{index}", sample_rate=RATE, num_samples=len(audio), flac_path=str(path),
            lossy_path=None, srt_path=None, vtt_path=None, input_lufs=-18.0, output_lufs=-18.0, gain_db=0.0,
            limiter_reduction_db=0.0, true_peak_dbtp=-3.0, near_silent=True, segments=[]))
    m4b = finish_book(finished, tmp_path / "b.m4b", "B", options=replace(OPTIONS, loudness_preset="audiobook"))
    book = decode(m4b.path)
    position = 0
    for chapter in finished:
        master, _ = soundfile.read(chapter.flac_path, dtype="float32")
        assert lag_of(book, master, position) == 0
        position += chapter.num_samples
    assert abs(len(book) - position) < export.AAC_FRAME
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_frame_arithmetic(tmp_path):
    pcm = np.zeros(10 * export.AAC_FRAME + 5, np.float32)
    path = export.encode_adts(pcm, tmp_path / "x.aac", RATE)
    assert export.adts_frame_count(path) == export.part_frames(len(pcm), 0) == 12
    assert export.part_frames(10 * export.AAC_FRAME, export.AAC_FRAME) == 10
    part = export.BookPart(str(path), 12, 0, len(pcm))
    # a part whose head could not be left out: its marker stays at the start of its frames
    assert export.part_positions([part, part]) == [(0, len(pcm)), (12 * 1024, 12 * 1024 + len(pcm))]
    trimmed = export.BookPart(str(path), 11, 1500, 11 * 1024)  # sample 0 decodes 476 samples into the part
    assert export.part_positions([trimmed]) == [(-476, 11 * 1024 - 476)]


def test_a_chapter_without_leading_silence_keeps_its_marker(tmp_path):
    """No silence to leave out at the head: the tail's silence is cut instead, so the markers
    and the length still follow the index and the chapter's audio decodes one frame late."""
    finished = []
    for index, seconds in enumerate((2.5, 3.25)):
        audio = np.concatenate([voiced(seconds, index), np.zeros(RATE, np.float32)])
        audio = audio[: len(audio) // export.AAC_FRAME * export.AAC_FRAME]
        path = export.write_flac(tmp_path / f"c{index}.flac", audio, RATE)
        finished.append(FinishedChapter(
            chapter_index=index, title=f"C{index}", sample_rate=RATE, num_samples=len(audio), flac_path=str(path),
            lossy_path=None, srt_path=None, vtt_path=None, input_lufs=-18.0, output_lufs=-18.0, gain_db=0.0,
            limiter_reduction_db=0.0, true_peak_dbtp=-3.0, near_silent=True, segments=[]))
    m4b = finish_book(finished, tmp_path / "b.m4b", "B", options=OPTIONS)
    info = probe(m4b.path)
    position = 0
    book = decode(m4b.path)
    for chapter, marker in zip(finished, info["chapters"]):
        assert float(marker["start_time"]) == pytest.approx(position / RATE, abs=0.0011)
        master, _ = soundfile.read(chapter.flac_path, dtype="float32")
        assert lag_of(book, master, position) == export.AAC_FRAME
        position += chapter.num_samples
    assert len(book) == position
