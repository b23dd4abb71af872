"""A chapter's stored codes -> one decoded waveform (one streaming pass, no seams) -> finished files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.finish import BookInfo, FinishedChapter, FinishOptions, SegmentSpan, finish_chapter
from pipeline.store import SegmentStore


@dataclass(frozen=True)
class ChapterSegment:
    """What finishing needs of one planned segment."""

    key: str
    text: str
    boundary: str
    pause_s: float | None = None


def decode_chapter(codec, codes: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Decode the segments' codes [frames, n_vq] as one stream; return audio and each segment's span."""
    decoder = codec.streaming_decoder(1, out_device="cpu")
    pieces, spans, position = [], [], 0
    with torch.no_grad():
        for segment_codes in codes:
            frames = torch.from_numpy(segment_codes.astype(np.int64)).T[None].to(codec.device)  # 1, K, F
            audio = decoder.push(frames)[0].numpy()
            pieces.append(audio)
            spans.append((position, position + len(audio)))
            position += len(audio)
    decoder.flush()
    return (np.concatenate(pieces) if pieces else np.zeros(0, np.float32)), spans


def finish_chapter_from_store(
    store: SegmentStore,
    codec,
    chapter_index: int,
    title: str,
    segments: list[ChapterSegment],
    out_dir: str | Path,
    options: FinishOptions,
    book: BookInfo,
    stem: str,
) -> FinishedChapter:
    stored = [store.get(s.key) for s in segments]
    audio, spans = decode_chapter(codec, [s.codes for s in stored])
    spans_for_finish = [
        SegmentSpan(start=a, end=b, text=s.text, boundary=s.boundary, pause_s=s.pause_s, key=s.key)
        for s, (a, b) in zip(segments, spans)
    ]
    return finish_chapter(audio, spans_for_finish, out_dir, chapter_index, title, options, stem=stem, book=book)
