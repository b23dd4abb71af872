"""Export: FLAC masters, lossy chapter files and the book's M4B, through FFmpeg.

Every file is written under a temporary name next to its destination and renamed into
place when complete, so a crash never leaves a truncated file with the final name.

The M4B is built by FFmpeg from the chapters' FLAC masters with the concat demuxer: audio
streams from disk through FFmpeg and never sits in memory as a whole, and no WAV header
(with its 32-bit sizes) is involved, so books past 4 GB of PCM or 12 hours work. MP4 switches
to 64-bit offsets by itself when the output needs them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import soundfile

STDERR_TAIL_CHARS = 3000


class FfmpegError(RuntimeError):
    """FFmpeg is missing or failed; the message carries the command and its stderr tail."""


@dataclass(frozen=True)
class LossyFormat:
    codec: str  # FFmpeg encoder
    extension: str  # file extension, without the dot
    muxer: str  # FFmpeg output format


LOSSY_FORMATS: dict[str, LossyFormat] = {
    "mp3": LossyFormat(codec="libmp3lame", extension="mp3", muxer="mp3"),
    "opus": LossyFormat(codec="libopus", extension="opus", muxer="ogg"),
    "aac": LossyFormat(codec="aac", extension="m4a", muxer="ipod"),
}

_BITRATE = re.compile(r"^([1-9][0-9]*)(k?)$", re.IGNORECASE)


def lossy_format(name: str) -> LossyFormat:
    if name not in LOSSY_FORMATS:
        raise ValueError(f"unknown lossy format {name!r}; valid formats: {', '.join(LOSSY_FORMATS)}")
    return LOSSY_FORMATS[name]


def normalize_bitrate(bitrate: str | int) -> str:
    """``"64k"``, ``"64K"``, ``64000`` or ``"64000"`` -> the FFmpeg form (``"64k"``/``"64000"``).

    Accepts 6 to 512 kbit/s.
    """
    text = str(bitrate).strip()
    match = _BITRATE.match(text)
    if not match:
        raise ValueError(f"bitrate {bitrate!r} is not valid; write it like '64k' or 64000")
    bits = int(match.group(1)) * (1000 if match.group(2) else 1)
    if not 6_000 <= bits <= 512_000:
        raise ValueError(f"bitrate {bitrate!r} is outside 6k..512k")
    return f"{bits // 1000}k" if bits % 1000 == 0 else str(bits)


# --- running FFmpeg ----------------------------------------------------------------------


def ffmpeg_executable() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise FfmpegError("ffmpeg was not found on PATH; install it (apt-get install ffmpeg or `make system-deps`)")
    return path


_PIPE_CHUNK = 1 << 20  # samples written to FFmpeg's stdin at a time


def run_ffmpeg(args: Sequence[str], what: str, pcm: np.ndarray | None = None) -> None:
    """Run ``ffmpeg <args>`` quietly; raise ``FfmpegError`` (with stderr's tail) on failure.

    With ``pcm``, those samples (mono float32) are streamed to FFmpeg's stdin in chunks;
    ``args`` must then read ``pipe:0`` (see ``pcm_input_args``).
    """
    command = [ffmpeg_executable(), "-hide_banner", "-nostats", "-loglevel", "error", "-y", *args]
    if pcm is None:
        command.insert(2, "-nostdin")
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL if pcm is None else subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        if pcm is not None:
            samples = np.ascontiguousarray(pcm, dtype="<f4")
            try:
                for lo in range(0, len(samples), _PIPE_CHUNK):
                    process.stdin.write(memoryview(samples[lo:lo + _PIPE_CHUNK]).cast("B"))
            except BrokenPipeError:
                pass  # FFmpeg stopped reading; its exit status and stderr say why
            finally:
                try:
                    process.stdin.close()
                except BrokenPipeError:
                    pass
        returncode = process.wait()
        if returncode != 0:
            stderr.seek(0)
            tail = stderr.read().decode("utf-8", errors="replace")[-STDERR_TAIL_CHARS:].strip()
            raise FfmpegError(
                f"ffmpeg failed ({what}) with exit status {returncode}\n"
                f"command: {' '.join(command)}\n"
                f"stderr (last part):\n{tail or '(empty)'}"
            )


def pcm_input_args(sample_rate: int) -> list[str]:
    """FFmpeg input options for mono float32 PCM on stdin (no header, so no size limit)."""
    return ["-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0"]


def _partial_path(destination: Path) -> Path:
    """A temporary name beside ``destination`` that keeps its extension."""
    return destination.with_name(f".{destination.stem}.partial{destination.suffix}")


def _publish(partial: Path, destination: Path) -> Path:
    os.replace(partial, destination)
    return destination


# --- FLAC --------------------------------------------------------------------------------


def write_flac(path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_24") -> Path:
    """Write mono float audio as FLAC (24-bit by default); samples beyond full scale are clipped."""
    destination = Path(path)
    partial = _partial_path(destination)
    data = np.asarray(audio, dtype=np.float32)
    if data.ndim != 1:
        raise ValueError(f"write_flac expects mono [T] audio, got shape {data.shape}")
    if len(data) and (float(data.max()) > 1.0 or float(data.min()) < -1.0):
        data = np.clip(data, -1.0, 1.0)
    try:
        soundfile.write(partial, data, sample_rate, subtype=subtype, format="FLAC")
    except Exception:
        partial.unlink(missing_ok=True)
        raise
    return _publish(partial, destination)


# --- lossy chapter files -----------------------------------------------------------------


def _metadata_args(tags: Mapping[str, str] | None) -> list[str]:
    args: list[str] = []
    for key, value in (tags or {}).items():
        if value is not None and str(value) != "":
            args += ["-metadata", f"{key}={value}"]
    return args


ENCODER_SPEEDS = ("fast", "quality")

# Encoder settings per speed: "fast" is about 1.3x (MP3) to 3x (AAC) faster on speech and
# transparent enough for narration at audiobook bitrates; "quality" is each encoder's best.
_SPEED_ARGS: dict[tuple[str, str], list[str]] = {
    ("mp3", "fast"): ["-compression_level", "5"],
    ("mp3", "quality"): ["-compression_level", "2"],
    ("opus", "fast"): ["-compression_level", "5", "-application", "audio"],
    ("opus", "quality"): ["-compression_level", "10", "-application", "audio"],
    ("aac", "fast"): ["-aac_coder", "fast"],
    ("aac", "quality"): ["-aac_coder", "twoloop"],
}


def encoder_args(format_name: str, bitrate: str | int, speed: str = "fast") -> list[str]:
    """``-c:a ...`` options for ``format_name`` at ``bitrate`` and ``speed``."""
    fmt = lossy_format(format_name)
    if speed not in ENCODER_SPEEDS:
        raise ValueError(f"unknown encoder speed {speed!r}; valid speeds: {', '.join(ENCODER_SPEEDS)}")
    return ["-c:a", fmt.codec, *_SPEED_ARGS[(format_name, speed)], "-b:a", normalize_bitrate(bitrate)]


def encode_lossy(
    source: str | Path | np.ndarray,
    destination: str | Path,
    format_name: str,
    bitrate: str | int = "64k",
    tags: Mapping[str, str] | None = None,
    speed: str = "fast",
    sample_rate: int | None = None,
) -> Path:
    """Encode to MP3, Opus or AAC from an audio file, or from a mono float array (then
    ``sample_rate`` is required) streamed to FFmpeg through a pipe."""
    fmt = lossy_format(format_name)
    destination = Path(destination)
    partial = _partial_path(destination)
    pcm = None
    if isinstance(source, np.ndarray):
        if sample_rate is None:
            raise ValueError("encode_lossy needs sample_rate when the source is an array")
        pcm = source
        args = pcm_input_args(sample_rate)
    else:
        args = ["-i", str(source)]
    args += ["-map", "0:a", "-map_metadata", "-1", *encoder_args(format_name, bitrate, speed)]
    args += [*_metadata_args(tags), "-f", fmt.muxer, str(partial)]
    try:
        run_ffmpeg(args, f"encoding {destination.name} as {format_name}", pcm=pcm)
    except Exception:
        partial.unlink(missing_ok=True)
        raise
    return _publish(partial, destination)


# --- M4B ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cover:
    data: bytes
    mime: str  # image/jpeg, image/png, or another image type FFmpeg can decode


_COVER_COPY = {"image/jpeg": ".jpg", "image/jpg": ".jpg", "image/png": ".png"}


@dataclass(frozen=True)
class BookChapter:
    path: str  # the chapter's audio (its FLAC master)
    title: str
    num_samples: int  # exact length of that file in samples


def chapter_times_ms(num_samples: Sequence[int], sample_rate: int) -> list[tuple[int, int]]:
    """(start, end) of each chapter in the joined book, in ms, from exact sample counts."""
    times = []
    position = 0
    for count in num_samples:
        start = (position * 1000 + sample_rate // 2) // sample_rate
        position += int(count)
        end = (position * 1000 + sample_rate // 2) // sample_rate
        times.append((start, end))
    return times


def _ffmetadata_escape(value: str) -> str:
    value = " ".join(str(value).split())  # no newlines
    return re.sub(r"([=;#\\])", r"\\\1", value)


def ffmetadata(tags: Mapping[str, str], chapters: Sequence[tuple[int, int, str]]) -> str:
    """An FFMETADATA1 document: global tags, then one [CHAPTER] (ms timebase) per chapter."""
    lines = [";FFMETADATA1"]
    for key, value in tags.items():
        if value is not None and str(value) != "":
            lines.append(f"{_ffmetadata_escape(key)}={_ffmetadata_escape(value)}")
    for start_ms, end_ms, title in chapters:
        lines += ["", "[CHAPTER]", "TIMEBASE=1/1000", f"START={start_ms}", f"END={end_ms}"]
        lines.append(f"title={_ffmetadata_escape(title)}")
    return "\n".join(lines) + "\n"


def _concat_line(path: str) -> str:
    quoted = str(Path(path).resolve()).replace("'", "'\\''")
    return f"file '{quoted}'"


def write_m4b(
    chapters: Sequence[BookChapter],
    destination: str | Path,
    sample_rate: int,
    title: str,
    author: str | None = None,
    cover: Cover | None = None,
    bitrate: str | int = "64k",
    extra_tags: Mapping[str, str] | None = None,
    speed: str = "fast",
) -> Path:
    """Join the chapters' audio into one AAC M4B with chapter markers, tags and cover."""
    if not chapters:
        raise ValueError("write_m4b needs at least one chapter")
    destination = Path(destination)
    partial = _partial_path(destination)
    tags = {"title": title, "album": title, "artist": author or "", "album_artist": author or "", "genre": "Audiobook"}
    tags.update(extra_tags or {})
    times = chapter_times_ms([c.num_samples for c in chapters], sample_rate)
    marks = [(start, end, chapter.title) for (start, end), chapter in zip(times, chapters)]
    with tempfile.TemporaryDirectory(prefix=".m4b-", dir=destination.parent) as work:
        work_dir = Path(work)
        concat_list = work_dir / "chapters.txt"
        concat_list.write_text("".join(_concat_line(c.path) + "\n" for c in chapters), encoding="utf-8")
        metadata = work_dir / "metadata.txt"
        metadata.write_text(ffmetadata(tags, marks), encoding="utf-8")
        args = ["-f", "concat", "-safe", "0", "-i", str(concat_list), "-f", "ffmetadata", "-i", str(metadata)]
        maps = ["-map", "0:a", "-map_metadata", "1", "-map_chapters", "1"]
        codecs = [*encoder_args("aac", bitrate, speed), "-ar", str(sample_rate)]
        if cover is not None:
            if not cover.data:
                raise ValueError("the cover image is empty")
            mime = cover.mime.lower()
            cover_path = work_dir / f"cover{_COVER_COPY.get(mime, '.img')}"
            cover_path.write_bytes(cover.data)
            args += ["-i", str(cover_path)]
            maps += ["-map", "2:v"]
            codecs += ["-c:v", "copy" if mime in _COVER_COPY else "png", "-disposition:v:0", "attached_pic"]
        args += [*maps, *codecs, "-movflags", "+faststart", "-f", "ipod", str(partial)]
        try:
            run_ffmpeg(args, f"writing the M4B {destination.name}")
        except Exception:
            partial.unlink(missing_ok=True)
            raise
    return _publish(partial, destination)
