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


def run_ffmpeg(args: Sequence[str], what: str) -> None:
    """Run ``ffmpeg <args>`` quietly; raise ``FfmpegError`` (with stderr's tail) on failure."""
    command = [ffmpeg_executable(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y", *args]
    result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if result.returncode != 0:
        tail = result.stderr.decode("utf-8", errors="replace")[-STDERR_TAIL_CHARS:].strip()
        raise FfmpegError(
            f"ffmpeg failed ({what}) with exit status {result.returncode}\n"
            f"command: {' '.join(command)}\n"
            f"stderr (last part):\n{tail or '(empty)'}"
        )


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
    if len(data) and float(np.abs(data).max()) > 1.0:
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


AAC_CODERS = ("fast", "twoloop")  # FFmpeg's AAC encoder: "fast" is ~3x faster on speech


def _aac_coder_args(coder: str) -> list[str]:
    if coder not in AAC_CODERS:
        raise ValueError(f"unknown AAC coder {coder!r}; valid coders: {', '.join(AAC_CODERS)}")
    return ["-aac_coder", coder]


def encode_lossy(
    source: str | Path,
    destination: str | Path,
    format_name: str,
    bitrate: str | int = "64k",
    tags: Mapping[str, str] | None = None,
    aac_coder: str = "fast",
) -> Path:
    """Encode an audio file (normally the chapter's FLAC master) to MP3, Opus or AAC."""
    fmt = lossy_format(format_name)
    destination = Path(destination)
    partial = _partial_path(destination)
    args = ["-i", str(source), "-map", "0:a", "-map_metadata", "-1", "-c:a", fmt.codec]
    if format_name == "aac":
        args += _aac_coder_args(aac_coder)
    args += ["-b:a", normalize_bitrate(bitrate), *_metadata_args(tags), "-f", fmt.muxer, str(partial)]
    try:
        run_ffmpeg(args, f"encoding {destination.name} as {format_name}")
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
    aac_coder: str = "fast",
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
        codecs = ["-c:a", "aac", *_aac_coder_args(aac_coder), "-b:a", normalize_bitrate(bitrate)]
        codecs += ["-ar", str(sample_rate)]
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
