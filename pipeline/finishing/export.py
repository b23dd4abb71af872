"""Export: FLAC masters, lossy chapter files and the book's M4B, through FFmpeg.

Every file is written under a temporary name next to its destination and renamed into
place when complete, so a crash never leaves a truncated file with the final name.

The M4B is normally the chapters' own AAC streams (ADTS, encoded while each chapter is
finished) joined by stream copy: every chapter is a whole number of 1024-sample AAC frames
and its stream leaves out as much leading silence as the encoder's priming frame adds, so
each chapter decodes exactly where the sum of the preceding chapters' lengths puts it
(``BookPart``, ``write_m4b_from_parts``). The older path, one encode of the whole book from
the FLAC masters (concat demuxer) or from PCM streamed through a pipe, remains as the
fallback (``write_m4b``): audio never sits in memory as a whole, and no WAV header (with its
32-bit sizes) is involved, so books past 4 GB of PCM or 12 hours work. MP4 switches to
64-bit offsets by itself when the output needs them. Tags are written with mutagen
(``pipeline.finishing.tags``) before the rename.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from queue import Full, Queue
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import soundfile

from pipeline.finishing.tags import Cover, Tags, iso639_2, write_tags

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


PcmSource = np.ndarray | Iterable[np.ndarray]


def run_ffmpeg(args: Sequence[str], what: str, pcm: PcmSource | None = None) -> None:
    """Run ``ffmpeg <args>`` quietly; raise ``FfmpegError`` (with stderr's tail) on failure.

    With ``pcm`` (mono float samples: one array, or arrays one after another), the samples
    are streamed to FFmpeg's stdin in chunks; ``args`` must then read ``pipe:0`` (see
    ``pcm_input_args``).
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
            stdin = process.stdin
            assert stdin is not None  # opened with stdin=PIPE
            pieces = [pcm] if isinstance(pcm, np.ndarray) else _prefetched(pcm)
            try:
                for piece in pieces:
                    samples = np.ascontiguousarray(piece, dtype="<f4").reshape(-1)
                    for lo in range(0, len(samples), _PIPE_CHUNK):
                        stdin.write(samples[lo:lo + _PIPE_CHUNK].data.cast("B"))
            except BrokenPipeError:
                pass  # FFmpeg stopped reading; its exit status and stderr say why
            finally:
                try:
                    stdin.close()
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


def _prefetched(pieces: Iterable[np.ndarray], depth: int = 2) -> Iterator[np.ndarray]:
    """``pieces``, computed in a thread ahead of the consumer: the next piece is being made
    (by numpy, mostly without the GIL) while the pipe to FFmpeg drains the current one."""
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for piece in pieces:
                while not stop.is_set():
                    try:
                        queue.put(piece, timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(done)
        except BaseException as error:  # handed to the consumer, raised there
            queue.put(error)

    thread = threading.Thread(target=produce, name="pcm-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = queue.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # the consumer stopped early (FFmpeg quit): let the producer end
        stop.set()
        thread.join()


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


def write_flac(
    path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_24", tags: Tags | None = None
) -> Path:
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
        if tags is not None:
            write_tags(partial, tags)
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
    source: str | Path | PcmSource,
    destination: str | Path,
    format_name: str,
    bitrate: str | int = "64k",
    tags: Tags | Mapping[str, str] | None = None,
    speed: str = "fast",
    sample_rate: int | None = None,
) -> Path:
    """Encode to MP3, Opus or AAC from an audio file, or from mono float PCM (an array or
    arrays one after another; then ``sample_rate`` is required) streamed through a pipe.

    ``tags``: a ``Tags`` (written with mutagen: track numbers, language, cover) or plain
    FFmpeg metadata keys."""
    fmt = lossy_format(format_name)
    destination = Path(destination)
    partial = _partial_path(destination)
    pcm = None
    if isinstance(source, (str, Path)):
        args = ["-i", str(source)]
    else:
        if sample_rate is None:
            raise ValueError("encode_lossy needs sample_rate when the source is PCM")
        pcm = source
        args = pcm_input_args(sample_rate)
    args += ["-map", "0:a", "-map_metadata", "-1", *encoder_args(format_name, bitrate, speed)]
    if isinstance(tags, Tags):
        args += _stream_language_args(fmt, tags.language)
    else:
        args += _metadata_args(tags)
    args += ["-f", fmt.muxer, str(partial)]
    try:
        run_ffmpeg(args, f"encoding {destination.name} as {format_name}", pcm=pcm)
        if isinstance(tags, Tags):
            write_tags(partial, tags)
    except Exception:
        partial.unlink(missing_ok=True)
        raise
    return _publish(partial, destination)


def _stream_language_args(fmt: LossyFormat, language: str | None) -> list[str]:
    """MP4 keeps the language in the track header, outside the tags: FFmpeg sets it."""
    code = iso639_2(language)
    return ["-metadata:s:a:0", f"language={code}"] if code and fmt.muxer == "ipod" else []


# --- decoding (to measure what was delivered) --------------------------------------------


def ffprobe_executable() -> str:
    path = shutil.which("ffprobe")
    if path is None:
        raise FfmpegError("ffprobe was not found on PATH; install FFmpeg (apt-get install ffmpeg or `make system-deps`)")
    return path


def audio_sample_rate(path: str | Path) -> int:
    """The sample rate of the first audio stream of ``path``."""
    command = [ffprobe_executable(), "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate",
               "-of", "csv=p=0", str(path)]
    result = subprocess.run(command, capture_output=True, text=True)
    text = result.stdout.strip().split("\n")[0] if result.returncode == 0 else ""
    if not text.isdigit():
        raise FfmpegError(f"ffprobe found no audio stream in {path}: {result.stderr.strip()[-STDERR_TAIL_CHARS:]}")
    return int(text)


def decode_pcm(path: str | Path, chunk_samples: int = 1 << 20) -> Iterable[np.ndarray]:
    """Mono float32 samples of ``path`` at its own sample rate, decoded by FFmpeg, in chunks."""
    command = [ffmpeg_executable(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-i", str(path),
               "-map", "0:a:0", "-ac", "1", "-f", "f32le", "pipe:1"]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
        stdout = process.stdout
        assert stdout is not None  # opened with stdout=PIPE
        try:
            carry = b""
            while True:
                data = stdout.read(4 * chunk_samples)
                if not data:
                    break
                data, whole = carry + data, (len(carry) + len(data)) // 4 * 4
                carry = data[whole:]
                if whole:
                    yield np.frombuffer(data[:whole], dtype="<f4")
        finally:
            stdout.close()
            returncode = process.wait()
        if returncode != 0:
            stderr.seek(0)
            tail = stderr.read().decode("utf-8", errors="replace")[-STDERR_TAIL_CHARS:].strip()
            raise FfmpegError(f"ffmpeg could not decode {path} (exit status {returncode}):\n{tail or '(empty)'}")


# --- M4B ---------------------------------------------------------------------------------

_PORTABLE_COVERS = {"image/jpeg", "image/jpg", "image/png"}


def portable_cover(cover: Cover) -> Cover:
    """The cover as JPEG or PNG (what MP4 and most players take): other images are
    converted to PNG by FFmpeg."""
    if not cover.data:
        raise ValueError("the cover image is empty")
    mime = cover.mime.lower()
    if mime in _PORTABLE_COVERS:
        return Cover(cover.data, "image/jpeg" if mime == "image/jpg" else mime)
    with tempfile.TemporaryDirectory(prefix=".cover-") as work:
        source, target = Path(work) / "cover.img", Path(work) / "cover.png"
        source.write_bytes(cover.data)
        run_ffmpeg(["-i", str(source), "-frames:v", "1", "-c:v", "png", "-f", "image2", str(target)],
                   f"converting the {cover.mime} cover to PNG")
        return Cover(target.read_bytes(), "image/png")


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
    language: str | None = None,
    pcm: Iterable[np.ndarray] | None = None,
) -> Path:
    """Join the chapters' audio into one AAC M4B with chapter markers, tags and cover.

    The audio is the chapters' files (``BookChapter.path``) or, with ``pcm``, the samples
    it yields (the chapters one after another, ``num_samples`` each). The file has the
    ``M4B `` brand and the audiobook media kind."""
    if not chapters:
        raise ValueError("write_m4b needs at least one chapter")
    destination = Path(destination)
    partial = _partial_path(destination)
    tags = Tags(title=title, album=title, artist=author or None, language=language,
                cover=None if cover is None else portable_cover(cover), audiobook=True)
    times = chapter_times_ms([c.num_samples for c in chapters], sample_rate)
    marks = [(start, end, chapter.title) for (start, end), chapter in zip(times, chapters)]
    with tempfile.TemporaryDirectory(prefix=".m4b-", dir=destination.parent) as work:
        work_dir = Path(work)
        metadata = work_dir / "metadata.txt"
        metadata.write_text(ffmetadata(dict(extra_tags or {}), marks), encoding="utf-8")
        if pcm is None:
            concat_list = work_dir / "chapters.txt"
            concat_list.write_text("".join(_concat_line(c.path) + "\n" for c in chapters), encoding="utf-8")
            args = ["-f", "concat", "-safe", "0", "-i", str(concat_list)]
        else:
            args = pcm_input_args(sample_rate)
        args += ["-f", "ffmetadata", "-i", str(metadata)]
        args += ["-map", "0:a", "-map_metadata", "1", "-map_chapters", "1"]
        args += [*encoder_args("aac", bitrate, speed), "-ar", str(sample_rate)]
        args += _stream_language_args(lossy_format("aac"), language)
        args += ["-brand", "M4B ", "-movflags", "+faststart", "-f", "ipod", str(partial)]
        try:
            run_ffmpeg(args, f"writing the M4B {destination.name}", pcm=pcm)
            write_tags(partial, tags)
        except Exception:
            partial.unlink(missing_ok=True)
            raise
    return _publish(partial, destination)


# --- M4B joined from per-chapter AAC by stream copy --------------------------------------

AAC_FRAME = 1024  # samples per AAC-LC frame; FFmpeg's encoder also delays its output by one frame


@dataclass(frozen=True)
class BookPart:
    """A chapter's audio for the M4B: a raw AAC (ADTS) stream, joined to the others by copy.

    The stream holds ``frames`` frames of 1024 samples: first the encoder's priming frame,
    then the chapter with its first ``head_trim`` samples (silence) left out, padded with
    silence to a whole frame. Chapter sample ``i`` therefore decodes at ``1024 - head_trim + i``
    within the part; with ``head_trim`` = 1024 the priming takes the place of the silence
    left out, and a chapter of ``num_samples`` (a multiple of 1024) fills exactly its span.
    """

    path: str
    frames: int
    head_trim: int
    num_samples: int  # the chapter's length (its master)

    @property
    def offset(self) -> int:
        """Where chapter sample 0 decodes within the part."""
        return AAC_FRAME - self.head_trim


def part_frames(num_samples: int, head_trim: int) -> int:
    """Frames FFmpeg's AAC encoder writes for the chapter less ``head_trim`` samples, padded
    to whole frames: one priming frame plus ``ceil(samples / 1024)``."""
    return -(-(num_samples - head_trim) // AAC_FRAME) + 1


def encode_adts(
    pcm: PcmSource, destination: str | Path, sample_rate: int, bitrate: str | int = "64k", speed: str = "fast",
) -> Path:
    """Encode mono float PCM to a raw AAC stream (ADTS), the form that joins by concatenation."""
    destination = Path(destination)
    partial = _partial_path(destination)
    args = [*pcm_input_args(sample_rate), *encoder_args("aac", bitrate, speed), "-f", "adts", str(partial)]
    try:
        run_ffmpeg(args, f"encoding {destination.name} as AAC", pcm=pcm)
    except Exception:
        partial.unlink(missing_ok=True)
        raise
    return _publish(partial, destination)


def adts_frame_count(path: str | Path) -> int:
    """Frames in an ADTS stream, counted from their headers (13-bit frame lengths)."""
    data = Path(path).read_bytes()
    count = position = 0
    while position + 7 <= len(data):
        if data[position] != 0xFF or data[position + 1] & 0xF0 != 0xF0:
            raise ValueError(f"{path} is not an ADTS stream (no sync word at byte {position})")
        length = ((data[position + 3] & 0x03) << 11) | (data[position + 4] << 3) | (data[position + 5] >> 5)
        if length < 7:
            raise ValueError(f"{path}: corrupt ADTS frame at byte {position}")
        position += length
        count += 1
    if position != len(data):
        raise ValueError(f"{path}: truncated ADTS frame at the end")
    return count


def part_positions(parts: Sequence[BookPart]) -> list[tuple[int, int]]:
    """(start, end) in samples of each chapter's marker in the joined stream.

    A chapter starts where its sample 0 decodes or, when that is later (its head was not
    silent, so the priming frame came before it), where its part begins: the marker stays
    where the preceding lengths put it, and the chapter opens with 43 ms of silence."""
    positions = []
    block = 0
    for part in parts:
        start = block + min(0, part.offset)
        positions.append((start, start + part.num_samples))
        block += part.frames * AAC_FRAME
    return positions


def write_m4b_from_parts(
    parts: Sequence[BookPart],
    titles: Sequence[str],
    destination: str | Path,
    sample_rate: int,
    title: str,
    author: str | None = None,
    cover: Cover | None = None,
    extra_tags: Mapping[str, str] | None = None,
    language: str | None = None,
) -> Path:
    """The M4B from the chapters' AAC streams joined by stream copy (no re-encode): chapter
    markers where each chapter's audio really is, tags, cover, ``M4B `` brand, audiobook kind.

    A marker starts where the chapter's sample 0 decodes and ends where the next one starts
    (the last ends with the stream)."""
    if not parts:
        raise ValueError("write_m4b_from_parts needs at least one chapter")
    if len(titles) != len(parts):
        raise ValueError(f"{len(parts)} parts but {len(titles)} titles")
    destination = Path(destination)
    partial = _partial_path(destination)
    tags = Tags(title=title, album=title, artist=author or None, language=language,
                cover=None if cover is None else portable_cover(cover), audiobook=True)
    starts = [start for start, _ in part_positions(parts)]
    total = sum(p.frames for p in parts) * AAC_FRAME
    bounds = [*starts[1:], total]
    starts[0] = 0  # the book opens with the first chapter, whatever silence leads into it
    marks = [(_ms(start, sample_rate), _ms(end, sample_rate), name) for start, end, name in zip(starts, bounds, titles)]
    with tempfile.TemporaryDirectory(prefix=".m4b-", dir=destination.parent) as work:
        work_dir = Path(work)
        metadata = work_dir / "metadata.txt"
        metadata.write_text(ffmetadata(dict(extra_tags or {}), marks), encoding="utf-8")
        joined = work_dir / "book.aac"
        with open(joined, "wb") as sink:  # ADTS frames are self-contained: the join is a concatenation
            for part in parts:
                with open(part.path, "rb") as source:
                    shutil.copyfileobj(source, sink, 1 << 22)
        args = ["-f", "aac", "-i", str(joined), "-f", "ffmetadata", "-i", str(metadata)]
        args += ["-map", "0:a", "-map_metadata", "1", "-map_chapters", "1", "-c:a", "copy"]
        args += _stream_language_args(lossy_format("aac"), language)
        args += ["-brand", "M4B ", "-movflags", "+faststart", "-f", "ipod", str(partial)]
        try:
            run_ffmpeg(args, f"joining the M4B {destination.name}")
            write_tags(partial, tags)
        except Exception:
            partial.unlink(missing_ok=True)
            raise
    return _publish(partial, destination)


def _ms(samples: int, sample_rate: int) -> int:
    return (samples * 1000 + sample_rate // 2) // sample_rate
