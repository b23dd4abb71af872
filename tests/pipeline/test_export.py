"""Export: FLAC masters, lossy files, the M4B (chapters, tags, cover), FFmpeg errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from pipeline.finishing import export
from pipeline.finishing.export import BookChapter, Cover, FfmpegError

RATE = 24_000

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="FFmpeg not installed")


def probe(path: Path) -> dict:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-show_chapters", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(result.stdout)


def tone(seconds: float, freq: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * RATE))) / RATE
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_image(path: Path, codec_args: list[str]) -> bytes:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=0x3366cc:s=64x64",
                    "-frames:v", "1", *codec_args, str(path)], check=True)
    return path.read_bytes()


def test_flac_round_trip(tmp_path):
    audio = tone(1.2345, 440)
    path = export.write_flac(tmp_path / "a.flac", audio, RATE)
    back, rate = soundfile.read(path, dtype="float32")
    info = soundfile.info(path)
    assert rate == RATE and info.subtype == "PCM_24" and len(back) == len(audio)
    np.testing.assert_allclose(back, audio, atol=2 ** -23)
    assert not list(tmp_path.glob(".*partial*"))


def test_bitrates():
    assert export.normalize_bitrate("64k") == "64k"
    assert export.normalize_bitrate("96K") == "96k"
    assert export.normalize_bitrate(128000) == "128k"
    assert export.normalize_bitrate("48500") == "48500"
    for bad in ("fast", "0k", "1000k", "64 kbps"):
        with pytest.raises(ValueError):
            export.normalize_bitrate(bad)
    with pytest.raises(ValueError, match="valid formats: mp3, opus, aac"):
        export.lossy_format("wma")


@pytest.mark.parametrize("fmt, codec, extension", [("mp3", "mp3", "mp3"), ("opus", "opus", "opus"),
                                                  ("aac", "aac", "m4a")])
def test_lossy_formats(tmp_path, fmt, codec, extension):
    noise = 0.05 * np.random.default_rng(0).standard_normal(3 * RATE).astype(np.float32)
    master = export.write_flac(tmp_path / "c.flac", tone(3.0, 330) + noise, RATE)
    out = export.encode_lossy(master, tmp_path / f"c.{extension}", fmt, "48k",
                              tags={"title": "Chapter = One; #1", "artist": "A. Author"})
    info = probe(out)
    stream = info["streams"][0]
    assert stream["codec_name"] == codec and stream["channels"] == 1
    assert float(info["format"]["duration"]) == pytest.approx(3.0, abs=0.1)
    tags = {k.lower(): v for k, v in info["format"].get("tags", {}).items()}
    tags.update({k.lower(): v for k, v in stream.get("tags", {}).items()})
    assert tags["title"] == "Chapter = One; #1"
    assert 30_000 < int(info["format"]["bit_rate"]) < 70_000


def test_ffmpeg_failure_is_a_clear_error_and_leaves_no_file(tmp_path):
    bad = tmp_path / "not-audio.flac"
    bad.write_bytes(b"this is not a FLAC file")
    with pytest.raises(FfmpegError) as caught:
        export.encode_lossy(bad, tmp_path / "out.mp3", "mp3")
    message = str(caught.value)
    assert "exit status" in message and "not-audio.flac" in message and "stderr" in message
    ffmpeg_words = message.split("stderr (last part):\n", 1)[1].strip()
    assert ffmpeg_words not in ("", "(empty)")  # FFmpeg's own words are passed on
    assert not (tmp_path / "out.mp3").exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_missing_ffmpeg_is_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(export.shutil, "which", lambda name: None)
    with pytest.raises(FfmpegError, match="ffmpeg was not found"):
        export.encode_lossy(tmp_path / "x.flac", tmp_path / "x.mp3", "mp3")


def test_chapter_times_are_computed_from_exact_sample_counts():
    assert export.chapter_times_ms([24_000, 36_012, 12], RATE) == [(0, 1000), (1000, 2501), (2501, 2501)]
    # no drift: the end of chapter k is the start of chapter k+1, rounded once from samples
    counts = [24_011] * 1000
    times = export.chapter_times_ms(counts, RATE)
    assert times[-1][1] == round(sum(counts) * 1000 / RATE)
    assert all(a[1] == b[0] for a, b in zip(times, times[1:]))


def test_ffmetadata_escapes_special_characters():
    text = export.ffmetadata({"title": "A = B; #1 \\ x\ny"}, [(0, 10, "Ch; 1")])
    assert "title=A \\= B\\; \\#1 \\\\ x y\n" in text
    assert "[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=10\ntitle=Ch\\; 1\n" in text


@pytest.mark.parametrize("cover_kind", ["png", "jpeg", "bmp", None])
def test_m4b_chapters_tags_cover_and_duration(tmp_path, cover_kind):
    lengths_s = [1.3, 2.0417, 0.77]
    titles = ["Chapter 1: The Beginning", "Chapter 2 = it's ; #2 \\ odd", "Épilogue"]
    chapters = []
    for i, (seconds, title) in enumerate(zip(lengths_s, titles)):
        audio = tone(seconds, 200 + 100 * i)
        # a quote in a file name must survive the concat list
        path = export.write_flac(tmp_path / f"chap'{i}.flac", audio, RATE)
        chapters.append(BookChapter(path=str(path), title=title, num_samples=len(audio)))
    cover = None
    if cover_kind == "png":
        cover = Cover(make_image(tmp_path / "c.png", []), "image/png")
    elif cover_kind == "jpeg":
        cover = Cover(make_image(tmp_path / "c.jpg", ["-q:v", "3"]), "image/jpeg")
    elif cover_kind == "bmp":
        cover = Cover(make_image(tmp_path / "c.bmp", []), "image/bmp")

    out = export.write_m4b(chapters, tmp_path / "book.m4b", RATE, title="The Book", author="Ann Author", cover=cover)
    info = probe(out)

    expected = export.chapter_times_ms([c.num_samples for c in chapters], RATE)
    got = info["chapters"]
    assert [c["tags"]["title"] for c in got] == titles
    for (start_ms, end_ms), chapter in zip(expected, got):
        assert float(chapter["start_time"]) == pytest.approx(start_ms / 1000, abs=0.0011)
        assert float(chapter["end_time"]) == pytest.approx(end_ms / 1000, abs=0.0011)
    total_s = sum(c.num_samples for c in chapters) / RATE
    assert float(info["format"]["duration"]) == pytest.approx(total_s, abs=0.05)
    tags = info["format"]["tags"]
    assert tags["title"] == "The Book" and tags["artist"] == "Ann Author" and tags["album"] == "The Book"
    audio_streams = [s for s in info["streams"] if s["codec_type"] == "audio"]
    assert len(audio_streams) == 1 and audio_streams[0]["codec_name"] == "aac"
    assert int(audio_streams[0]["sample_rate"]) == RATE
    pictures = [s for s in info["streams"] if s.get("disposition", {}).get("attached_pic") == 1]
    if cover is None:
        assert pictures == []
    else:
        assert len(pictures) == 1
        assert pictures[0]["codec_name"] == {"png": "png", "jpeg": "mjpeg", "bmp": "png"}[cover_kind]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_m4b_with_no_chapters_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least one chapter"):
        export.write_m4b([], tmp_path / "b.m4b", RATE, title="x")


@pytest.mark.parametrize("fmt, codec", [("mp3", "mp3"), ("opus", "opus"), ("aac", "aac")])
@pytest.mark.parametrize("speed", ["fast", "quality"])
def test_lossy_from_an_array_through_a_pipe(tmp_path, fmt, codec, speed):
    audio = tone(2.5, 250) + 0.02 * np.random.default_rng(1).standard_normal(int(2.5 * RATE)).astype(np.float32)
    extension = export.lossy_format(fmt).extension
    out = export.encode_lossy(audio, tmp_path / f"p.{extension}", fmt, "40k", tags={"title": "Piped"},
                              speed=speed, sample_rate=RATE)
    info = probe(out)
    assert info["streams"][0]["codec_name"] == codec
    assert float(info["format"]["duration"]) == pytest.approx(2.5, abs=0.1)
    # decode it back: the same tone is there, and at the same level
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "f32le", "-ac", "1", "-ar", str(RATE),
                              "-"], capture_output=True, check=True).stdout
    back = np.frombuffer(decoded, dtype="<f4")
    assert np.sqrt(np.mean(back**2)) == pytest.approx(np.sqrt(np.mean(audio**2)), rel=0.1)
    with pytest.raises(ValueError, match="valid speeds: fast, quality"):
        export.encoder_args(fmt, "40k", "slowest")


def test_pipe_failure_is_an_error_not_a_hang(tmp_path):
    audio = np.zeros(200 * RATE, np.float32)  # more than a pipe buffer: FFmpeg quits mid-stream
    with pytest.raises(FfmpegError, match="No such file or directory"):
        export.encode_lossy(audio, tmp_path / "missing-dir" / "x.mp3", "mp3", sample_rate=RATE)
    with pytest.raises(ValueError, match="sample_rate"):
        export.encode_lossy(audio, tmp_path / "x.mp3", "mp3")
