"""Subtitles: SRT and WebVTT from (start_s, end_s, text) rows, one cue per sentence.

Times are rounded to the millisecond (the resolution of both formats); a cue always
ends at least 1 ms after it starts. Hours are not limited to two digits, so files of
any length stay valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


def _milliseconds(seconds: float) -> int:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a subtitle time must be a finite number >= 0 seconds, got {seconds!r}")
    return int(round(seconds * 1000.0))


def format_timestamp(seconds: float, decimal_mark: str) -> str:
    """``HH:MM:SS,mmm`` (SRT, ``decimal_mark=","``) or ``HH:MM:SS.mmm`` (WebVTT, ``"."``)."""
    total_ms = _milliseconds(seconds)
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_mark}{ms:03d}"


def _lines(text: str) -> list[str]:
    """Non-empty lines of ``text`` with inner whitespace collapsed (a blank line would end
    the cue in both formats)."""
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def _cue_times(cue: Cue) -> tuple[float, float]:
    start_ms = _milliseconds(cue.start_s)
    end_ms = max(_milliseconds(cue.end_s), start_ms + 1)
    return start_ms / 1000.0, end_ms / 1000.0


def _srt_text(text: str) -> str:
    # "-->" in a text line can be mistaken for a timing line by lenient parsers.
    return "\n".join(line.replace("-->", "->") for line in _lines(text))


def _vtt_text(text: str) -> str:
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "\n".join(_lines(escaped))


def to_srt(cues: Iterable[Cue]) -> str:
    """SubRip text: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, blank line between."""
    blocks = []
    for number, cue in enumerate((c for c in cues if c.text.strip()), start=1):
        start, end = _cue_times(cue)
        blocks.append(
            f"{number}\n{format_timestamp(start, ',')} --> {format_timestamp(end, ',')}\n{_srt_text(cue.text)}\n"
        )
    return "\n".join(blocks)


def to_webvtt(cues: Iterable[Cue]) -> str:
    """WebVTT text: ``WEBVTT`` header, ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` cues; ``&``, ``<``
    and ``>`` in the text are escaped as character references."""
    blocks = ["WEBVTT\n"]
    for number, cue in enumerate((c for c in cues if c.text.strip()), start=1):
        start, end = _cue_times(cue)
        blocks.append(
            f"{number}\n{format_timestamp(start, '.')} --> {format_timestamp(end, '.')}\n{_vtt_text(cue.text)}\n"
        )
    return "\n".join(blocks)


def cues_from_rows(rows: Sequence[tuple[float, float, str]]) -> list[Cue]:
    return [Cue(float(start), float(end), str(text)) for start, end, text in rows]


def write_srt(path: str | Path, cues: Iterable[Cue]) -> Path:
    path = Path(path)
    path.write_text(to_srt(cues), encoding="utf-8")
    return path


def write_webvtt(path: str | Path, cues: Iterable[Cue]) -> Path:
    path = Path(path)
    path.write_text(to_webvtt(cues), encoding="utf-8")
    return path
