"""Subtitles: timestamp formats, escaping, and files that a real parser (FFmpeg) reads back."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest

from pipeline.finishing.subtitles import (
    Cue,
    CueLimits,
    cues_from_rows,
    display_width,
    format_timestamp,
    segment_cues,
    split_segment,
    spoken_seconds,
    to_srt,
    to_webvtt,
    wrap,
    write_srt,
    write_webvtt,
)

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


# --- cues that follow common practice ------------------------------------------------------

MOBY = ("Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse, "
        "and nothing particular to interest me on shore, I thought I would sail about a little and see the "
        "watery part of the world. It is a way I have of driving off the spleen and regulating the circulation.")
ZH = "这是一个很长的中文句子，用来测试字幕的切分是否正确，每一行不能超过二十一个汉字。第二句话在这里！还有第三句。"


def check_limits(cues: list[Cue], limits: CueLimits = CueLimits()) -> None:
    for cue in cues:
        lines = cue.text.split("\n")
        assert 1 <= len(lines) <= limits.max_lines, cue
        assert all(display_width(line) <= limits.max_line_chars for line in lines), cue
        assert cue.end_s - cue.start_s <= limits.max_seconds + 1e-9, cue


@pytest.mark.parametrize("text, seconds", [(MOBY, 19.0), (MOBY, 30.0), (ZH, 20.0), ("Short.", 1.0)])
def test_cues_fit_two_lines_of_42_and_seven_seconds(text, seconds):
    cues = split_segment(text, 3.0, 3.0 + seconds)
    check_limits(cues)
    # together they are the segment: its words in order, its time end to end
    assert "".join("".join(c.text.split()) for c in cues) == "".join(text.split())
    assert cues[0].start_s == 3.0 and cues[-1].end_s == 3.0 + seconds
    assert all(a.end_s == pytest.approx(b.start_s) for a, b in zip(cues, cues[1:]))


def test_cues_are_cut_at_sentences_first_then_clauses():
    cues = split_segment(MOBY, 0.0, 19.0)
    assert cues[0].text == "Call me Ishmael."
    assert cues[-1].text.replace("\n", " ").startswith("It is a way")  # a sentence starts a cue
    zh = split_segment(ZH, 0.0, 20.0)
    assert [c.text for c in zh][-2:] == ["第二句话在这里！", "还有第三句。"]
    assert all(c.text[-1] in "，。！" for c in zh)  # every cut at punctuation


def test_time_is_shared_by_spoken_length():
    text = "One. Two three four five six seven eight nine ten eleven."
    first, second = split_segment(text, 0.0, 6.0)
    ratio = spoken_seconds("One.") / spoken_seconds(text)
    assert first.end_s == pytest.approx(6.0 * ratio) and second.start_s == first.end_s
    assert spoken_seconds("中文") == pytest.approx(2 / 4.5) and spoken_seconds("ab, c!") == pytest.approx(3 / 11.5)


def test_a_long_sentence_without_punctuation_is_cut_between_words_and_a_huge_word_by_characters():
    words = " ".join(f"word{i}" for i in range(40))
    cues = split_segment(words, 0.0, 12.0)
    check_limits(cues)
    assert " ".join(c.text.replace("\n", " ") for c in cues) == words  # cut between words only
    url = "https://example.org/" + "a" * 150
    check_limits(split_segment(url, 0.0, 3.0))


def test_wrap_balances_two_lines_and_refuses_what_does_not_fit():
    assert wrap("Short line.") == ["Short line."]
    first, second = wrap("I thought I would sail about a little and see the watery part of the world.")
    assert abs(len(first) - len(second)) <= 12 and max(len(first), len(second)) <= 42
    assert wrap("x" * 43 + " " + "y" * 43) is None
    assert wrap("x " * 30, CueLimits(max_lines=1)) is None
    with pytest.raises(ValueError):
        CueLimits(max_lines=3)


def test_segments_mode_keeps_one_cue_per_segment():
    rows = [(0.0, 19.0, MOBY), (19.5, 21.0, "The end.")]
    assert [c.text for c in segment_cues(rows, "segments")] == [MOBY, "The end."]
    assert len(segment_cues(rows, "sentences")) > 2
    with pytest.raises(ValueError, match="valid modes: sentences, segments"):
        segment_cues(rows, "words")
