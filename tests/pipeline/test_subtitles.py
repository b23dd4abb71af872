"""Subtitles: timestamp formats, escaping, and files that a real parser (FFmpeg) reads back."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest

from pipeline.subtitles import Cue, cues_from_rows, format_timestamp, to_srt, to_webvtt, write_srt, write_webvtt

needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed")

ROWS = [
    (0.5, 2.25, "It was a bright cold day in April."),
    (2.7, 5.0004, 'He said: "5 < 6 & 7 > 3" --> fine.'),
    (5.4, 7.9995, "Two\n\nparagraph   lines."),
    (3723.004, 3725.5, "An hour later."),
]


def test_timestamps():
    assert format_timestamp(0.0, ",") == "00:00:00,000"
    assert format_timestamp(3723.004, ",") == "01:02:03,004"
    assert format_timestamp(3723.004, ".") == "01:02:03.004"
    assert format_timestamp(59.9996, ".") == "00:01:00.000"  # rounds to the nearest ms
    assert format_timestamp(100 * 3600 + 0.25, ",") == "100:00:00,250"  # no 99 h wrap
    with pytest.raises(ValueError):
        format_timestamp(-1.0, ",")


SRT_CUE = re.compile(r"(\d+)\n(\d{2,}):(\d{2}):(\d{2}),(\d{3}) --> (\d{2,}):(\d{2}):(\d{2}),(\d{3})\n((?:.+\n?)+)")
VTT_CUE = re.compile(r"(\d+)\n(\d{2,}):(\d{2}):(\d{2})\.(\d{3}) --> (\d{2,}):(\d{2}):(\d{2})\.(\d{3})\n((?:.+\n?)+)")


def parse(text: str, pattern: re.Pattern) -> list[tuple[int, float, float, str]]:
    cues = []
    for block in text.strip().split("\n\n"):
        match = pattern.fullmatch(block + "\n")
        if match is None:
            continue
        g = match.groups()
        start = int(g[1]) * 3600 + int(g[2]) * 60 + int(g[3]) + int(g[4]) / 1000
        end = int(g[5]) * 3600 + int(g[6]) * 60 + int(g[7]) + int(g[8]) / 1000
        cues.append((int(g[0]), start, end, g[9].rstrip("\n")))
    return cues


def test_srt_structure_times_and_text():
    text = to_srt(cues_from_rows(ROWS))
    cues = parse(text, SRT_CUE)
    assert [c[0] for c in cues] == [1, 2, 3, 4]
    for (start, end, _), (_, got_start, got_end, _) in zip(ROWS, cues):
        assert got_start == pytest.approx(start, abs=0.0005)
        assert got_end == pytest.approx(end, abs=0.0005)
    assert cues[1][3] == 'He said: "5 < 6 & 7 > 3" -> fine.'
    assert cues[2][3] == "Two\nparagraph lines."  # no blank line inside a cue


def test_webvtt_structure_times_and_escaping():
    text = to_webvtt(cues_from_rows(ROWS))
    assert text.startswith("WEBVTT\n\n")
    cues = parse(text.split("\n", 2)[2], VTT_CUE)
    assert len(cues) == 4
    for (start, end, _), (_, got_start, got_end, _) in zip(ROWS, cues):
        assert got_start == pytest.approx(start, abs=0.0005)
        assert got_end == pytest.approx(end, abs=0.0005)
    payload = cues[1][3]
    assert "<" not in payload and ">" not in payload and "-->" not in payload
    assert html.unescape(payload) == ROWS[1][2]


def test_empty_cues_are_left_out_and_zero_length_cues_get_one_ms():
    cues = [Cue(1.0, 1.0, "Tick."), Cue(2.0, 3.0, "   "), Cue(3.0, 4.0, "Tock.")]
    parsed = parse(to_srt(cues), SRT_CUE)
    assert [(c[0], c[1], c[2], c[3]) for c in parsed] == [(1, 1.0, 1.001, "Tick."), (2, 3.0, 4.0, "Tock.")]


@needs_ffprobe
@pytest.mark.parametrize("kind", ["srt", "vtt"])
def test_ffmpeg_reads_the_files_with_the_right_times(tmp_path, kind):
    cues = cues_from_rows(ROWS)
    path = write_srt(tmp_path / "c.srt", cues) if kind == "srt" else write_webvtt(tmp_path / "c.vtt", cues)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_packets", "-show_entries", "packet=pts_time,duration_time",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )
    packets = json.loads(probe.stdout)["packets"]
    assert len(packets) == len(ROWS)
    for (start, end, _), packet in zip(ROWS, packets):
        assert float(packet["pts_time"]) == pytest.approx(start, abs=0.0005)
        assert float(packet["pts_time"]) + float(packet["duration_time"]) == pytest.approx(end, abs=0.001)
