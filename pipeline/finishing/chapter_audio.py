"""A chapter's stored segments -> one waveform (each segment's stored audio, end to end) -> finished files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.finishing.finish import BookInfo, FinishedChapter, FinishOptions, SegmentSpan, finish_chapter
from pipeline.narration.segment_audio import decode_segments
from pipeline.narration.store import SegmentStore, StoredSegment

if TYPE_CHECKING:
    from moss_model.codec import AudioCodec


@dataclass(frozen=True)
class ChapterSegment:
    """What finishing needs of one planned segment."""

    key: str
    text: str
    boundary: str
    pause_s: float | None = None


def chapter_waveform(
    stored: list[StoredSegment], load_codec: Callable[[], AudioCodec], sample_rate: int
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The segments' audio end to end, and each one's span in it.

    Audio the narrator stored is used as it is; a segment stored without audio (by an older
    version) is decoded here the same way (`pipeline.narration.segment_audio`), so the result is the same.
    """
    missing = [i for i, s in enumerate(stored) if s.audio is None]
    rates = {int(s.sample_rate) for s in stored if s.audio is not None and s.sample_rate}
    decoded: dict[int, np.ndarray] = {}
    if missing:
        codec = load_codec()
        decoded = dict(zip(missing, decode_segments(codec, [stored[i].codes for i in missing])))
        rates.add(codec.sample_rate)
    if rates - {sample_rate}:
        raise ValueError(f"segment audio at {sorted(rates)} Hz, but finishing expects {sample_rate} Hz")
    audio = [s.audio if s.audio is not None else decoded[i] for i, s in enumerate(stored)]
    spans, position = [], 0
    for a in audio:
        spans.append((position, position + len(a)))
        position += len(a)
    return (np.concatenate(audio) if audio else np.zeros(0, np.float32)), spans


def finish_chapter_from_store(
    store: SegmentStore,
    load_codec: Callable[[], AudioCodec],
    chapter_index: int,
    title: str,
    segments: list[ChapterSegment],
    out_dir: str | Path,
    options: FinishOptions,
    book: BookInfo,
    stem: str,
) -> FinishedChapter:
    """Stitch, normalize and export one chapter from the store; `load_codec` is called only if a
    segment has no stored audio."""
    audio, spans = chapter_waveform([store.get(s.key) for s in segments], load_codec, options.sample_rate)
    spans_for_finish = [
        SegmentSpan(start=a, end=b, text=s.text, boundary=s.boundary, pause_s=s.pause_s, key=s.key)
        for s, (a, b) in zip(segments, spans)
    ]
    return finish_chapter(audio, spans_for_finish, out_dir, chapter_index, title, options, stem=stem, book=book)
