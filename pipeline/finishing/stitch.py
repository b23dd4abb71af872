"""Stitching a chapter: segment audio laid end to end with exact silences between.

The decoder hands over one waveform per chapter and, for every segment, the span
``[start, end)`` (in samples) it occupies there. Stitching copies each span into a new
waveform and inserts the pause that follows it as digital silence of an exact number of
samples. Where a cut lands on non-silent signal, a short raised-cosine fade removes the
click; where the signal is already near zero, nothing is touched.

Explicit pause markers in the manuscript (``[pause 1.5s]``) end a segment at planning time
(the plan's ``pause_s``); here that pause replaces the boundary kind's default, so it is
silence inserted by this stage instead of something the model would have to speak. The
marker parser below uses the planner's grammar, for callers that hold text with markers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from moss_model.codec.rates import DEFAULT_SAMPLE_RATE
from pipeline.text.inline import find_controls

# The planner's boundary kinds (pipeline.text.segment.BOUNDARY_KINDS), shortest pause first.
BOUNDARY_KINDS = ("clause", "sentence", "paragraph", "chapter")


@dataclass(frozen=True)
class PauseOptions:
    """Silence (in seconds) inserted after a segment, by the kind of boundary after it.

    ``lead_in_s`` is the silence before the first segment of a chapter. The last segment
    of a chapter normally has boundary kind ``chapter``, so ``chapter_s`` is the silence
    at the end of each chapter file (and hence the gap between chapters in the book).
    """

    clause_s: float = 0.2
    sentence_s: float = 0.45
    paragraph_s: float = 1.0
    chapter_s: float = 2.0
    lead_in_s: float = 0.5

    def __post_init__(self) -> None:
        for name in ("clause_s", "sentence_s", "paragraph_s", "chapter_s", "lead_in_s"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"PauseOptions.{name} must be a finite number >= 0, got {value!r}")

    def seconds_for(self, kind: str) -> float:
        """Pause in seconds after a boundary of ``kind``."""
        if kind not in BOUNDARY_KINDS:
            raise ValueError(f"unknown boundary kind {kind!r}; valid kinds: {', '.join(BOUNDARY_KINDS)}")
        return float(getattr(self, f"{kind}_s"))


def seconds_to_samples(seconds: float, sample_rate: int = DEFAULT_SAMPLE_RATE) -> int:
    """Round a duration to a whole number of samples (the only rounding in stitching)."""
    if not np.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be a finite number >= 0 seconds, got {seconds!r}")
    return int(round(seconds * sample_rate))


# --- explicit pause markers -------------------------------------------------------------


@dataclass(frozen=True)
class TextPiece:
    """A run of text and the explicit pause (seconds) written right after it.

    ``pause_s`` is ``None`` when no marker follows the piece (the boundary kind decides).
    """

    text: str
    pause_s: float | None


def split_pause_markers(text: str) -> list[TextPiece]:
    """Split ``text`` at its ``[pause 1.5s]`` markers.

    The marker grammar is the planner's (``pipeline.text.inline``), so the planner's
    duration estimate and this split agree on what is a marker. Returns the pieces in
    order, each with the total pause written after it (adjacent markers add up). Pieces
    are whitespace-stripped; a marker at the very start gives a first piece with empty
    text.
    """
    pieces: list[TextPiece] = []
    current: TextPiece | None = None
    position = 0
    for control in find_controls(text):
        if control.kind != "marker":
            continue
        between = text[position:control.start].strip()
        if between:
            if current is not None:
                pieces.append(current)
            current = TextPiece(between, None)
        if current is None:
            current = TextPiece("", None)
        current = TextPiece(current.text, (current.pause_s or 0.0) + control.pause_seconds)
        position = control.end
    tail = text[position:].strip()
    if tail:
        if current is not None:
            pieces.append(current)
        current = TextPiece(tail, None)
    if current is not None:
        pieces.append(current)
    return pieces


def strip_pause_markers(text: str) -> tuple[str, list[float]]:
    """``text`` without its pause markers (pieces joined by one space) and the pauses found."""
    pieces = split_pause_markers(text)
    clean = " ".join(piece.text for piece in pieces if piece.text)
    pauses = [piece.pause_s for piece in pieces if piece.pause_s is not None]
    return clean, pauses


# --- stitching --------------------------------------------------------------------------


@dataclass(frozen=True)
class StitchResult:
    """The stitched chapter and where each segment now sits in it."""

    audio: np.ndarray  # float32 [T]
    spans: np.ndarray  # int64 [N, 2]: start, end (exclusive) of each segment in ``audio``
    pauses: np.ndarray  # int64 [N]: silence samples inserted after each segment
    lead_in: int  # silence samples before the first segment


def pause_samples(
    kinds: Sequence[str],
    explicit_s: Sequence[float | None],
    options: PauseOptions,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> np.ndarray:
    """Silence after each segment, in samples.

    An explicit pause (from ``[pause ...]`` markers) replaces the boundary kind's default;
    ``None`` means "use the boundary kind".
    """
    if len(kinds) != len(explicit_s):
        raise ValueError(f"{len(kinds)} boundary kinds but {len(explicit_s)} explicit pauses")
    out = np.empty(len(kinds), dtype=np.int64)
    for i, (kind, explicit) in enumerate(zip(kinds, explicit_s)):
        seconds = options.seconds_for(kind) if explicit is None else float(explicit)
        out[i] = seconds_to_samples(seconds, sample_rate)
    return out


def _fade_curve(length: int) -> np.ndarray:
    """Raised-cosine ramp from 0 (exclusive) up to 1 (exclusive), ``length`` samples."""
    phase = (np.arange(length, dtype=np.float64) + 0.5) / length
    return (0.5 - 0.5 * np.cos(np.pi * phase)).astype(np.float32)


def stitch(
    audio: np.ndarray,
    spans: Sequence[tuple[int, int]] | np.ndarray,
    pauses: Sequence[int] | np.ndarray,
    lead_in: int = 0,
    fade_samples: int = 120,
    near_zero: float = 10 ** (-60 / 20),
) -> StitchResult:
    """Lay segments end to end with exact silences between them.

    Args:
        audio: the chapter's decoded waveform, float mono ``[T]``.
        spans: per segment ``(start, end)`` in ``audio`` (end exclusive), in order.
        pauses: silence in samples inserted after each segment.
        lead_in: silence in samples before the first segment.
        fade_samples: length of the fade at a cut (120 samples = 5 ms at 24 kHz).
        near_zero: a cut whose neighbourhood (the fade length) stays below this absolute
            amplitude is left untouched.

    A segment edge is a *cut* unless the next segment follows it directly in both the
    source and the output (no pause, contiguous spans). Cuts get a fade-out/fade-in only
    if the signal there is not near zero; the inserted silence is always exact.
    """
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono [T], got shape {audio.shape}")
    spans_arr = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    pauses_arr = np.asarray(pauses, dtype=np.int64).reshape(-1)
    n = len(spans_arr)
    if len(pauses_arr) != n:
        raise ValueError(f"{n} segment spans but {len(pauses_arr)} pauses")
    if lead_in < 0 or (pauses_arr < 0).any():
        raise ValueError("pauses and lead-in must be >= 0 samples")
    starts, ends = spans_arr[:, 0], spans_arr[:, 1]
    bad = np.flatnonzero((starts < 0) | (ends < starts) | (ends > len(audio)))
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"segment {i} span ({starts[i]}, {ends[i]}) is outside the chapter audio of {len(audio)} samples"
        )

    lengths = ends - starts
    steps = lengths + pauses_arr
    out_starts = lead_in + np.cumsum(steps) - steps  # exclusive running sum
    out_ends = out_starts + lengths
    total = int(lead_in + lengths.sum() + pauses_arr.sum())
    out = np.zeros(total, dtype=np.float32)
    for i in range(n):
        out[out_starts[i]:out_ends[i]] = audio[starts[i]:ends[i]]

    # Edges that are not cuts: segment i runs straight into segment i+1.
    joined_next = np.zeros(n, dtype=bool)
    if n > 1:
        joined_next[:-1] = (pauses_arr[:-1] == 0) & (ends[:-1] == starts[1:])
    joined_prev = np.zeros(n, dtype=bool)
    joined_prev[1:] = joined_next[:-1]

    for i in range(n):
        length = int(lengths[i])
        fade = min(fade_samples, length // 2)
        if fade <= 0:
            continue
        if not joined_prev[i]:
            head = out[out_starts[i]:out_starts[i] + fade]
            if np.abs(head).max() > near_zero:
                head *= _fade_curve(fade)
        if not joined_next[i]:
            tail = out[out_ends[i] - fade:out_ends[i]]
            if np.abs(tail).max() > near_zero:
                tail *= _fade_curve(fade)[::-1]
    return StitchResult(
        audio=out,
        spans=np.stack([out_starts, out_ends], axis=1),
        pauses=pauses_arr.copy(),
        lead_in=int(lead_in),
    )
