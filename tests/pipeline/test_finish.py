"""Finishing a book end to end: chapters -> FLAC + lossy + subtitles + timing rows -> M4B.

Everything is checked by measuring the outputs, not by trusting the functions' own
reports: FFmpeg's ebur128 meter and pyloudnorm for loudness, FFmpeg's meter and an 8x
``resample_poly`` for true peak, runs of exact zeros for pauses, FFprobe for subtitles and
the M4B, mutagen for tags.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import mutagen
import numpy as np
import pyloudnorm
import pytest
import soundfile
from scipy import signal

from pipeline.finishing import export
from pipeline.finishing.finish import BookInfo, FinishedChapter, FinishOptions, SegmentSpan, finish_book, finish_chapter
from pipeline.finishing.stitch import PauseOptions
from pipeline.finishing.subtitles import display_width
from tests.pipeline.ffmeter import ebur128

RATE = 24_000
pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="FFmpeg not installed")


def probe(path: str | Path, *entries: str) -> dict:
    result = subprocess.run(["ffprobe", "-v", "error", *entries, "-of", "json", str(path)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def measured_lufs(x: np.ndarray) -> float:
    return pyloudnorm.Meter(RATE).integrated_loudness(np.asarray(x, dtype=np.float64))


def measured_true_peak_db(x: np.ndarray) -> float:
    up = signal.resample_poly(np.asarray(x, dtype=np.float64), 8, 1)
    return 20 * math.log10(max(float(np.abs(up).max()), 1e-12))


def zero_runs(x: np.ndarray) -> list[tuple[int, int]]:
    is_zero = np.concatenate([[False], x == 0, [False]])
    edges = np.flatnonzero(np.diff(is_zero.astype(np.int8)))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2])]


def decoded_chapter(seconds: float, lufs: float, seed: int) -> np.ndarray:
    """Speech-like audio at ``lufs`` that is never exactly zero (so every run of zeros in
    the output is a pause the pipeline inserted)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 0.4 * t)) / RATE
    voice = sum(0.7**k * np.sin(k * phase + 0.5 * k) for k in range(1, 8))
    envelope = np.convolve(rng.lognormal(0, 0.5, n) * (rng.random(n) < 4 / RATE), np.hanning(4_000), "same")
    x = envelope * voice + 0.1 * rng.standard_normal(n)
    x = np.where(x >= 0, x + 0.2, x - 0.2)
    return (x * 10 ** ((lufs - measured_lufs(x)) / 20)).astype(np.float32)


TEXTS = [
    "It was a bright cold day in April.",
    "The clocks were striking thirteen,",
    "and Winston slipped quickly through the doors. [pause 1.234s]",
    "Outside, even through the shut window-pane, the world looked cold.",
    "Down in the street little eddies of wind were whirling dust.",
]


def segments_for(audio: np.ndarray, seed: int) -> list[SegmentSpan]:
    cuts = np.sort(np.random.default_rng(seed).choice(np.arange(RATE, len(audio) - RATE), 4, replace=False))
    edges = [0, *cuts.tolist(), len(audio)]
    kinds = ["sentence", "clause", "sentence", "paragraph", "chapter"]
    pauses = [None, None, 1.234, None, None]
    return [
        SegmentSpan(start=a, end=b, text=text, boundary=kind, pause_s=pause, key=f"k{seed}-{i}")
        for i, (a, b, text, kind, pause) in enumerate(zip(edges, edges[1:], TEXTS, kinds, pauses))
    ]


OPTIONS = FinishOptions(
    pauses=PauseOptions(clause_s=0.2, sentence_s=0.45, paragraph_s=1.0, chapter_s=2.0, lead_in_s=0.5),
    lossy_format="mp3",
    lossy_bitrate="64k",
)
CHAPTERS = [  # (title, seconds, input loudness in LUFS): loud, quiet, near-silent
    ("Chapter One: It Begins", 14.0, -9.0),
    ("Chapter Two = \"Quiet\"; #2", 11.5, -36.0),
    ("Chapter Three (whispers)", 6.0, -62.0),
]


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    cover_path = out / "cover.png"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=32x32", "-frames:v", "1",
                    str(cover_path)], check=True)
    inputs, finished = [], []
    cover = export.Cover(cover_path.read_bytes(), "image/png")
    info = BookInfo(title="The Book", author="Ann Author", language="en", cover=cover, chapter_count=len(CHAPTERS))
    for index, (title, seconds, level) in enumerate(CHAPTERS):
        audio = decoded_chapter(seconds, level, seed=index)
        segments = segments_for(audio, seed=index)
        inputs.append((audio, segments))
        finished.append(finish_chapter(audio, segments, out, index, title, OPTIONS, book=info))
    m4b = finish_book(finished, out / "book.m4b", "The Book", "Ann Author", cover, OPTIONS, language="en")
    return inputs, finished, m4b.path


def test_loudness_within_1_lu_and_true_peak_under_the_ceiling(book):
    inputs, finished, _ = book
    for (audio, _), chapter in zip(inputs[:2], finished[:2]):
        master, rate = soundfile.read(chapter.flac_path, dtype="float64")
        assert rate == RATE and len(master) == chapter.num_samples
        assert abs(measured_lufs(master) - OPTIONS.target) <= 1.0
        assert measured_true_peak_db(master) <= OPTIONS.true_peak_db
        assert not chapter.near_silent
    assert finished[0].gain_db < -8.0 and finished[1].gain_db > 17.0
    assert min(c.limiter_reduction_db for c in finished[:2]) > 0.0  # the limiter really worked


def test_near_silent_chapter_is_flagged_and_not_boosted(book):
    inputs, finished, _ = book
    audio, _ = inputs[2]
    chapter = finished[2]
    master, _ = soundfile.read(chapter.flac_path, dtype="float64")
    assert chapter.near_silent and chapter.gain_db == 0.0
    assert chapter.input_lufs < -50.0
    assert measured_lufs(master) <= chapter.input_lufs + 0.01  # (pauses only make it quieter)
    assert np.abs(master).max() <= np.abs(audio).max() + 2**-23


def test_pauses_are_exact_to_the_sample(book):
    _, finished, _ = book
    for chapter in finished:
        master, _ = soundfile.read(chapter.flac_path, dtype="float32")
        rows = chapter.segments
        expected_pauses = [round(0.45 * RATE), round(0.2 * RATE), round(1.234 * RATE), RATE]
        assert [r["pause_after_samples"] for r in rows[:-1]] == expected_pauses
        # the chapter's pause is lengthened to a whole number of AAC frames (for the M4B's join)
        assert 0 <= rows[-1]["pause_after_samples"] - 2 * RATE < 1024
        assert len(master) == rows[-1]["end_sample"] + rows[-1]["pause_after_samples"]
        assert len(master) % 1024 == 0
        for row in rows:
            assert not master[row["end_sample"]:row["end_sample"] + row["pause_after_samples"]].any()
        if not chapter.near_silent:
            # normalized chapters: every run of digital zeros is exactly one inserted pause
            # (in a near-silent chapter a faded edge sample may round to zero in 24 bits)
            expected_runs = [(0, RATE // 2)] + [(r["end_sample"], r["pause_after_samples"]) for r in rows]
            assert zero_runs(master) == expected_runs


def test_timing_rows_follow_the_segments(book):
    inputs, finished, _ = book
    for (_, segments), chapter in zip(inputs, finished):
        rows = chapter.segments
        assert [r["key"] for r in rows] == [s.key for s in segments]
        assert rows[2]["text"] == "and Winston slipped quickly through the doors."  # marker removed
        for row, segment in zip(rows, segments):
            assert row["end_sample"] - row["start_sample"] == segment.end - segment.start
            assert row["start_s"] == row["start_sample"] / RATE and row["end_s"] == row["end_sample"] / RATE
        for row, following in zip(rows, rows[1:]):
            assert row["end_sample"] + row["pause_after_samples"] == following["start_sample"]


def subtitle_packets(path: str) -> list[tuple[float, float]]:
    packets = probe(path, "-show_packets", "-show_entries", "packet=pts_time,duration_time")["packets"]
    return [(float(p["pts_time"]), float(p["pts_time"]) + float(p["duration_time"])) for p in packets]


def srt_cues(path: str) -> list[list[str]]:
    blocks = Path(path).read_text(encoding="utf-8").strip().split("\n\n")
    return [block.split("\n")[2:] for block in blocks]


@pytest.mark.parametrize("kind", ["srt", "vtt"])
def test_subtitles_parse_and_cues_tile_each_segment(book, kind):
    _, finished, _ = book
    for chapter in finished:
        path = chapter.srt_path if kind == "srt" else chapter.vtt_path
        times = subtitle_packets(path)
        assert len(times) >= len(chapter.segments)
        # every segment's time is covered by its cues, end to end, and nothing else
        starts = {round(r["start_s"], 3) for r in chapter.segments}
        ends = {round(r["end_s"], 3) for r in chapter.segments}
        assert starts <= {round(a, 3) for a, _ in times} and ends <= {round(b, 3) for _, b in times}
        for (a, b), (c, _) in zip(times, times[1:]):
            assert b <= c + 0.0011
            assert round(b, 3) == round(c, 3) or round(b, 3) in ends
        text = Path(path).read_text(encoding="utf-8")
        assert "[pause" not in text and "Winston slipped" in text


def test_cues_follow_the_two_lines_of_42_and_7_seconds_rule(tmp_path):
    long_text = ("Call me Ishmael. Some years ago, never mind how long precisely, having little or no money "
                 "in my purse, and nothing particular to interest me on shore, I thought I would sail about a "
                 "little and see the watery part of the world.")
    audio = decoded_chapter(24.0, -20.0, seed=9)
    segments = [SegmentSpan(0, 20 * RATE, long_text, "sentence", key="a"),
                SegmentSpan(20 * RATE, len(audio), "Short one.", "chapter", key="b")]
    chapter = finish_chapter(audio, segments, tmp_path, 0, "Loomings", replace(OPTIONS, lossy_format=None))
    cues, times = srt_cues(chapter.srt_path), subtitle_packets(chapter.srt_path)
    assert len(cues) >= 4
    for lines, (start, end) in zip(cues, times):
        assert 1 <= len(lines) <= 2 and all(display_width(line) <= 42 for line in lines)
        assert end - start <= 7.0 + 0.001
    assert " ".join(" ".join(lines) for lines in cues) == long_text + " Short one."
    # the first sentence ends a cue, and the option keeps one cue per segment
    assert cues[0] == ["Call me Ishmael."]
    one = finish_chapter(audio, segments, tmp_path / "one", 0, "Loomings",
                         replace(OPTIONS, lossy_format=None, subtitles="segments"))
    assert len(srt_cues(one.srt_path)) == 2


def test_lossy_chapter_files(book):
    _, finished, _ = book
    for chapter in finished:
        info = probe(chapter.lossy_path, "-show_format", "-show_streams")
        assert info["streams"][0]["codec_name"] == "mp3"
        assert float(info["format"]["duration"]) == pytest.approx(chapter.duration_s, abs=0.1)
        assert info["format"]["tags"]["title"] == chapter.title


def test_m4b_chapters_titles_duration_tags_and_cover(book):
    _, finished, m4b = book
    info = probe(m4b, "-show_format", "-show_streams", "-show_chapters")
    assert info["format"]["tags"]["major_brand"].strip() == "M4B"
    assert [c["tags"]["title"] for c in info["chapters"]] == [title for title, _, _ in CHAPTERS]
    position = 0
    for chapter, marker in zip(finished, info["chapters"]):
        assert float(marker["start_time"]) == pytest.approx(position / RATE, abs=0.0011)
        position += chapter.num_samples
        assert float(marker["end_time"]) == pytest.approx(position / RATE, abs=0.0011)
    assert float(info["format"]["duration"]) == pytest.approx(position / RATE, abs=0.05)
    assert info["format"]["tags"]["title"] == "The Book" and info["format"]["tags"]["artist"] == "Ann Author"
    assert any(s.get("disposition", {}).get("attached_pic") == 1 for s in info["streams"])


def test_tags_read_back_with_mutagen(book):
    _, finished, m4b = book
    for chapter in finished:
        flac = mutagen.File(chapter.flac_path)
        assert flac["title"] == [chapter.title] and flac["album"] == ["The Book"] and flac["artist"] == ["Ann Author"]
        assert flac["tracknumber"] == [str(chapter.chapter_index + 1)] and flac["tracktotal"] == ["3"]
        assert flac["language"] == ["en"] and flac.pictures[0].mime == "image/png"
        mp3 = mutagen.File(chapter.lossy_path)
        assert str(mp3["TIT2"]) == chapter.title and str(mp3["TALB"]) == "The Book"
        assert str(mp3["TRCK"]) == f"{chapter.chapter_index + 1}/3" and str(mp3["TLAN"]) == "eng"
        assert mp3["APIC:Cover"].mime == "image/png"
    book_file = mutagen.File(m4b)
    assert book_file["\xa9nam"] == ["The Book"] and book_file["\xa9ART"] == ["Ann Author"]
    assert book_file["stik"] == [2]  # media kind: audiobook
    assert len(book_file["covr"]) == 1
    stream = probe(m4b, "-show_streams")["streams"][0]
    assert stream["tags"]["language"] == "eng"


@pytest.mark.parametrize("fmt", ["opus", "aac"])
def test_opus_and_aac_tags_read_back(tmp_path, fmt):
    audio = decoded_chapter(6.0, -20.0, seed=4)
    info = BookInfo(title="B", author="A", language="zh", chapter_count=9)
    chapter = finish_chapter(audio, segments_for(audio, 4), tmp_path, 4, "第五章", replace(OPTIONS, lossy_format=fmt),
                             book=info)
    tags = mutagen.File(chapter.lossy_path)
    if fmt == "opus":
        assert tags["title"] == ["第五章"] and tags["tracknumber"] == ["5"] and tags["tracktotal"] == ["9"]
        assert tags["language"] == ["zh"]
    else:
        assert tags["\xa9nam"] == ["第五章"] and tags["trkn"] == [(5, 9)] and "stik" not in tags
        assert probe(chapter.lossy_path, "-show_streams")["streams"][0]["tags"]["language"] == "zho"


@pytest.mark.parametrize("preset", ["audiobook", "podcast", "broadcast"])
@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac"])
def test_every_delivered_file_passes_ffmpegs_meter(tmp_path, preset, fmt):
    """FFmpeg's ebur128 meter on each delivered file: true peak <= ceiling, loudness within 0.5 LU."""
    options = replace(OPTIONS, loudness_preset=preset, lossy_format=fmt)
    finished = []
    for index, level in enumerate((-9.0, -30.0)):  # loud peaks to limit, and a large boost
        audio = decoded_chapter(12.0, level, seed=10 + index)
        finished.append(finish_chapter(audio, segments_for(audio, index), tmp_path, index, f"C{index}", options))
    m4b = finish_book(finished, tmp_path / "b.m4b", "B", options=options)
    files = [c.flac_path for c in finished] + [c.lossy_path for c in finished] + [m4b.path]
    reported = [c.flac for c in finished] + [c.lossy for c in finished] + [m4b]
    for path, figures in zip(files, reported):
        measured = ebur128(path)
        assert measured.true_peak_dbtp <= options.true_peak_db, (path, measured)
        assert abs(measured.lufs - options.target) <= 0.5, (path, measured)
        # the figures the index gets are the delivered file's
        assert figures.path == path
        assert figures.true_peak_dbtp == pytest.approx(measured.true_peak_dbtp, abs=0.1)
        assert figures.lufs == pytest.approx(measured.lufs, abs=0.15)  # (FFmpeg prints one decimal)


@pytest.mark.parametrize("fmt", ["mp3", "aac"])
def test_a_file_that_misses_is_encoded_again_until_it_passes(tmp_path, monkeypatch, fmt):
    """With the probe's prediction switched off, the first encode at 32 kbit/s overshoots the
    ceiling (and MP3 loses loudness); the measurement after encoding drives the next passes."""
    from pipeline.finishing import deliver

    monkeypatch.setattr(deliver, "_probe", lambda *args: (0.0, 0.0))
    options = replace(OPTIONS, lossy_format=fmt, lossy_bitrate="32k", loudness_preset="podcast", write_m4b=False)
    audio = decoded_chapter(12.0, -9.0, seed=21)
    audio += 0.05 * np.random.default_rng(0).standard_normal(len(audio)).astype(np.float32)  # hiss: hard to encode
    chapter = finish_chapter(audio, segments_for(audio, 1), tmp_path, 0, "Low", options)
    measured = ebur128(chapter.lossy_path)
    assert measured.true_peak_dbtp <= -1.0 and abs(measured.lufs + 16.0) <= 0.5
    assert chapter.lossy.passes >= 2  # the first encode missed, by the measurement after it


def test_rerun_is_reproducible_and_takes_other_settings(book, tmp_path):
    """``job=finish``: the same stored input gives the same master; other options apply."""
    inputs, finished, _ = book
    audio, segments = inputs[1]
    again = finish_chapter(audio, segments, tmp_path / "same", 1, CHAPTERS[1][0], OPTIONS)
    # the same samples (the tags differ: this run was given no book details)
    np.testing.assert_array_equal(soundfile.read(again.flac_path, dtype="int32")[0],
                                  soundfile.read(finished[1].flac_path, dtype="int32")[0])
    assert again.segments == finished[1].segments

    other = replace(OPTIONS, loudness_preset="broadcast", lossy_format="opus", lossy_bitrate="32k",
                    pauses=replace(OPTIONS.pauses, sentence_s=0.7), subtitles=False)
    redone = finish_chapter(audio, segments, tmp_path / "other", 1, CHAPTERS[1][0], other)
    master, _ = soundfile.read(redone.flac_path, dtype="float64")
    assert abs(measured_lufs(master) - (-23.0)) <= 1.0
    assert redone.segments[0]["pause_after_samples"] == round(0.7 * RATE)
    assert redone.lossy_path.endswith(".opus") and redone.srt_path is None
    assert probe(redone.lossy_path, "-show_streams")["streams"][0]["codec_name"] == "opus"


def test_options_are_checked_with_the_valid_choices():
    with pytest.raises(ValueError, match="valid presets"):
        FinishOptions(loudness_preset="loud")
    with pytest.raises(ValueError, match="valid formats"):
        FinishOptions(lossy_format="wav")
    with pytest.raises(ValueError, match="bitrate"):
        FinishOptions(lossy_bitrate="lots")
    with pytest.raises(ValueError, match="valid speeds: fast, quality"):
        FinishOptions(encoder_speed="best")
    assert FinishOptions(target_lufs=-20.0).target == -20.0
    assert FinishOptions(loudness_preset="podcast").target == -16.0


def test_no_m4b_when_switched_off(tmp_path):
    assert finish_book([], tmp_path / "b.m4b", "T", options=FinishOptions(write_m4b=False)) is None
    assert not (tmp_path / "b.m4b").exists()


def test_a_chapter_without_segments_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no segments"):
        finish_chapter(np.zeros(100, np.float32), [], tmp_path, 0, "Empty")


@pytest.mark.slow
def test_a_book_longer_than_12_hours_exports(tmp_path):
    """13 one-hour chapters (silence with a tone at the start of each): > 12 h, and more than
    4 GB of decoded 32-bit PCM streams through FFmpeg into the M4B."""
    hour = 3600 * RATE
    block = 60 * RATE
    t = np.arange(block) / RATE
    beep = np.zeros(block, np.float32)
    beep[: 2 * RATE] = (0.25 * np.sin(2 * np.pi * 440 * t[: 2 * RATE])).astype(np.float32)
    silence = np.zeros(block, np.float32)
    finished = []
    for index in range(13):
        path = tmp_path / f"chapter_{index:03d}.flac"
        with soundfile.SoundFile(path, "w", RATE, 1, subtype="PCM_24", format="FLAC") as sink:
            for minute in range(60):
                sink.write(beep if minute == 0 else silence)
        finished.append(FinishedChapter(
            chapter_index=index, title=f"Hour {index + 1}", sample_rate=RATE, num_samples=hour,
            flac_path=str(path), lossy_path=None, srt_path=None, vtt_path=None, input_lufs=-30.0,
            output_lufs=-30.0, gain_db=0.0, limiter_reduction_db=0.0, true_peak_dbtp=-12.0,
            near_silent=False, segments=[],
        ))
    m4b = finish_book(finished, tmp_path / "long.m4b", "A Long Book", "Patient Author").path
    info = probe(m4b, "-show_format", "-show_chapters")
    total_s = 13 * 3600
    assert float(info["format"]["duration"]) == pytest.approx(total_s, abs=0.1)
    assert len(info["chapters"]) == 13
    assert float(info["chapters"][-1]["start_time"]) == pytest.approx(12 * 3600, abs=0.002)
    assert float(info["chapters"][-1]["end_time"]) == pytest.approx(total_s, abs=0.002)
    assert info["chapters"][-1]["tags"]["title"] == "Hour 13"
