"""Subtitles: SRT and WebVTT from timed segments.

A segment (up to ~30 s of speech) is cut into cues the way subtitles are usually made: at
most two lines of at most 42 characters and about 7 s per cue, cut at sentence ends first,
then at clause punctuation, then between words (between characters in Chinese, where a
wide character counts as two). The segment's time is shared among its cues by spoken
length (letters and digits at the planner's reading rates). ``mode="segments"`` keeps one
cue per segment instead.

Times are rounded to the millisecond (the resolution of both formats); a cue always
ends at least 1 ms after it starts. Hours are not limited to two digits, so files of
any length stay valid.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

MODES = ("sentences", "segments")


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


@dataclass(frozen=True)
class CueLimits:
    max_line_chars: int = 42  # display width: a wide (CJK) character counts as two
    max_lines: int = 2
    max_seconds: float = 7.0

    def __post_init__(self) -> None:
        if self.max_line_chars < 10 or self.max_lines not in (1, 2) or self.max_seconds <= 0:
            raise ValueError(f"subtitle limits need >= 10 characters, 1 or 2 lines and > 0 s, got {self}")


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _is_wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in "WF"


# Spoken length: seconds per character at the planner's default rates (11.5 Latin letters
# or digits a second, 4.5 Han characters); punctuation and spaces take no time.
def spoken_seconds(text: str) -> float:
    wide = sum(1 for ch in text if _is_wide(ch) and ch.isalnum())
    narrow = sum(1 for ch in text if ch.isalnum() and not _is_wide(ch))
    return wide / 4.5 + narrow / 11.5


_SENTENCE_END = re.compile(r"""(?<=[.!?…。！？])["'”’）)\]]*\s+|(?<=[。！？])["'”’）)]*""")
_CLAUSE_END = re.compile(r"(?<=[,;:，；：、—])\s*|\s+(?=[—–]\s)")


def _split(text: str, pattern: re.Pattern) -> list[str]:
    pieces, position = [], 0
    for match in pattern.finditer(text):
        if match.end() > position and match.start() > position:
            pieces.append(text[position:match.end()])
            position = match.end()
    pieces.append(text[position:])
    return [p for p in pieces if p.strip()]


def _words(text: str) -> list[str]:
    """Words with their trailing space; each wide character on its own."""
    return [w for w in re.findall(r"[^\s\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]+\s*|[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef][\s\u3000-\u303f\uff01-\uff0f\uff1a-\uff20]*", text) if w]


def _clean(text: str) -> str:
    return " ".join(text.split())


def wrap(text: str, limits: CueLimits = CueLimits()) -> list[str] | None:
    """``text`` on as few lines as fit (balanced when two), or None when it needs more than
    ``limits.max_lines`` lines of ``limits.max_line_chars``."""
    text = _clean(text)
    if display_width(text) <= limits.max_line_chars:
        return [text]
    words = _words(text)
    if limits.max_lines < 2 or len(words) < 2:
        return None
    best = None  # (score, lines)
    for cut in range(1, len(words)):
        first, second = _clean("".join(words[:cut])), _clean("".join(words[cut:]))
        widths = (display_width(first), display_width(second))
        if max(widths) > limits.max_line_chars:
            continue
        # balanced lines, and a break after punctuation when it costs little
        score = abs(widths[0] - widths[1]) - (6 if re.search(r"[,;:.!?，；：。！？、]$", first) else 0)
        if best is None or score < best[0]:
            best = (score, [first, second])
    return None if best is None else best[1]


def _pack(text: str, fits: Callable[[str], bool], levels: list[Callable[[str], list[str]]]) -> list[str]:
    """``text`` as pieces that each ``fit``: split at the first level that splits it, then
    greedily join neighbours back while they still fit."""
    if fits(text) or not levels:
        return [text] if fits(text) or not levels else []
    parts = levels[0](text)
    if len(parts) < 2:
        return _pack(text, fits, levels[1:]) if len(levels) > 1 else _force(text, fits)
    out: list[str] = []
    current = ""
    for part in parts:
        candidate = current + part
        if current and fits(candidate):
            current = candidate
            continue
        if current:
            out.append(current)
        if fits(part):
            current = part
        else:
            out.extend(_pack(part, fits, levels[1:]) if len(levels) > 1 else _force(part, fits))
            current = ""
    if current:
        out.append(current)
    return out


def _force(text: str, fits: Callable[[str], bool]) -> list[str]:
    """A single word longer than a cue (a URL, say): cut it by characters."""
    out, current = [], ""
    for ch in text:
        if current and not fits(current + ch):
            out.append(current)
            current = ""
        current += ch
    return out + ([current] if current else [])


def split_segment(text: str, start_s: float, end_s: float, limits: CueLimits = CueLimits()) -> list[Cue]:
    """Cues for one segment's text spoken from ``start_s`` to ``end_s``."""
    text = _clean(text)
    if not text:
        return []
    duration = max(0.0, end_s - start_s)
    total = spoken_seconds(text) or float(len(text))

    def share(piece: str) -> float:
        return (spoken_seconds(piece) or (len(_clean(piece)) if not spoken_seconds(text) else 0.0)) / total

    def fits(piece: str) -> bool:
        return wrap(piece, limits) is not None and share(piece) * duration <= limits.max_seconds

    sentences = _split(text + " ", _SENTENCE_END)
    pieces: list[str] = []
    for sentence in sentences:
        pieces += _pack(sentence, fits, [lambda t: _split(t, _CLAUSE_END), _words])
    cues, spoken = [], 0.0
    for piece in pieces:
        lines = wrap(piece, limits) or [_clean(piece)]
        begin = start_s + duration * spoken
        spoken = min(1.0, spoken + share(piece))
        cues.append(Cue(begin, start_s + duration * spoken, "\n".join(lines)))
    if cues:  # the last cue ends with the segment, whatever the rounding
        cues[-1] = Cue(cues[-1].start_s, end_s, cues[-1].text)
    return cues


def segment_cues(rows: Sequence[tuple[float, float, str]], mode: str = "sentences",
                 limits: CueLimits = CueLimits()) -> list[Cue]:
    """Cues for timed segments ``(start_s, end_s, text)``: split (``"sentences"``) or one
    per segment (``"segments"``)."""
    if mode not in MODES:
        raise ValueError(f"unknown subtitle mode {mode!r}; valid modes: {', '.join(MODES)}")
    if mode == "segments":
        return cues_from_rows(rows)
    return [cue for start, end, text in rows for cue in split_segment(str(text), float(start), float(end), limits)]


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
