"""Finishing: a decoded chapter becomes its master, lossy file, subtitles and timing rows;
finished chapters become the book's M4B. Every delivered file is measured after it is
written and corrected until it passes (``pipeline.finishing.deliver``); its figures are kept for the index.

Plain functions over arrays and dataclasses, so a CPU Ray task per chapter (and one for
the book) can call them, and ``job=finish`` can rerun them from stored segments with
other options. Nothing here needs the model, Ray or Hydra.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soundfile

from moss_model.codec.rates import DEFAULT_SAMPLE_RATE
from pipeline.finishing import deliver, export, loudness, stitch, subtitles
from pipeline.finishing.tags import Cover, Tags


@dataclass(frozen=True)
class FinishOptions:
    sample_rate: int = DEFAULT_SAMPLE_RATE  # the codec's; finishing checks the stored segments have it
    pauses: stitch.PauseOptions = field(default_factory=stitch.PauseOptions)
    fade_ms: float = 5.0  # fade at a cut whose signal is not already near zero
    loudness_preset: str = "audiobook"  # audiobook (-18), podcast (-16), broadcast (-23)
    target_lufs: float | None = None  # overrides the preset when set
    true_peak_db: float = -1.0  # ceiling, dBTP, for every delivered file
    peak_guard_db: float = 0.1  # files aim this far under the ceiling (meters differ by ~0.05 dB)
    loudness_tolerance_lu: float = 0.5  # delivered files within this of the target
    max_passes: int = 3  # encodes per delivered file before giving up
    near_silent_lufs: float = -50.0  # quieter chapters get no boost (and are flagged)
    limiter_lookahead_ms: float = 5.0
    limiter_release_db_per_s: float = 20.0
    flac_subtype: str = "PCM_24"
    lossy_format: str | None = "mp3"  # mp3, opus, aac, or None for FLAC only
    lossy_bitrate: str = "64k"
    subtitles: str | None = "sentences"  # SRT + WebVTT: sentences (2 x 42 chars, <= 7 s) | segments | None
    write_m4b: bool = True
    m4b_bitrate: str = "64k"
    # masters that lossy files are made from are limited this much further under the ceiling,
    # so that the encoders' overshoot (usually 0.5 to 0.8 dB at 64 kbit/s, now and then 1.8 dB
    # for an hour of AAC) still passes at the first encode (and peaks stay under -3 dBTP, as ACX asks)
    lossy_headroom_db: float = 2.0
    encoder_speed: str = "fast"  # lossy encoders (chapters and M4B): fast | quality

    def __post_init__(self) -> None:
        if isinstance(self.subtitles, bool):  # the older switch: on = split cues
            object.__setattr__(self, "subtitles", "sentences" if self.subtitles else None)
        if self.subtitles is not None and self.subtitles not in subtitles.MODES:
            raise ValueError(f"unknown subtitles mode {self.subtitles!r}; valid modes: "
                             f"{', '.join(subtitles.MODES)}, or null for none")
        if not 0.0 <= self.peak_guard_db <= 1.0 or not 0.1 <= self.loudness_tolerance_lu <= 3.0:
            raise ValueError("peak_guard_db must be within 0..1 dB and loudness_tolerance_lu within 0.1..3 LU")
        if self.max_passes < 1:
            raise ValueError(f"max_passes must be at least 1, got {self.max_passes}")
        loudness.resolve_target(self.loudness_preset, self.target_lufs)
        if self.lossy_format is not None:
            export.lossy_format(self.lossy_format)
        export.normalize_bitrate(self.lossy_bitrate)
        export.normalize_bitrate(self.m4b_bitrate)
        if self.encoder_speed not in export.ENCODER_SPEEDS:
            raise ValueError(
                f"unknown encoder_speed {self.encoder_speed!r}; valid speeds: {', '.join(export.ENCODER_SPEEDS)}"
            )
        if not -20.0 <= self.true_peak_db <= 0.0:
            raise ValueError(f"true_peak_db must be between -20 and 0 dBTP, got {self.true_peak_db}")
        if self.fade_ms < 0:
            raise ValueError(f"fade_ms must be >= 0, got {self.fade_ms}")
        if not 0.0 <= self.lossy_headroom_db <= 6.0:
            raise ValueError(f"lossy_headroom_db must be within 0..6 dB, got {self.lossy_headroom_db}")

    @property
    def target(self) -> float:
        return loudness.resolve_target(self.loudness_preset, self.target_lufs)

    @property
    def makes_lossy(self) -> bool:
        """Lossy files are made from the masters, all at bitrates the lossy headroom covers."""
        bitrates = ([self.lossy_bitrate] if self.lossy_format is not None else []) + \
            ([self.m4b_bitrate] if self.write_m4b else [])
        return bool(bitrates) and all(_covered_by_headroom(b) for b in bitrates)

    @property
    def limiter(self) -> loudness.LimiterOptions:
        """The masters' limiter: it holds them under the ceiling less the guard, and less the
        lossy headroom when lossy files are made from them."""
        headroom = self.lossy_headroom_db if self.makes_lossy else 0.0
        return loudness.LimiterOptions(
            ceiling_db=self.true_peak_db - self.peak_guard_db - headroom,
            lookahead_ms=self.limiter_lookahead_ms,
            release_db_per_s=self.limiter_release_db_per_s,
        )

    def delivery(self, adjust_loudness: bool = True) -> deliver.DeliveryTarget:
        return deliver.DeliveryTarget(
            target_lufs=self.target,
            ceiling_db=self.true_peak_db,
            guard_db=self.peak_guard_db,
            tolerance_lu=self.loudness_tolerance_lu,
            max_passes=self.max_passes,
            adjust_loudness=adjust_loudness,
            limiter=self.limiter,
        )


@dataclass(frozen=True)
class BookInfo:
    """What the tags of every file say about the book."""

    title: str | None = None
    author: str | None = None
    language: str | None = None  # ISO 639-1 or 639-2
    cover: Cover | None = None
    chapter_count: int | None = None  # track total


@dataclass(frozen=True)
class SegmentSpan:
    """One segment of a chapter as the decoder delivered it."""

    start: int  # first sample in the decoded chapter waveform
    end: int  # one past the last sample
    text: str = ""
    boundary: str = "sentence"  # kind of the boundary after this segment (stitch.BOUNDARY_KINDS)
    pause_s: float | None = None  # explicit [pause] after it; replaces the boundary's pause
    key: str = ""  # the segment's store key


@dataclass
class FinishedChapter:
    """What finishing one chapter produced: files, loudness figures and timing rows."""

    chapter_index: int
    title: str
    sample_rate: int
    num_samples: int
    flac_path: str
    lossy_path: str | None
    srt_path: str | None
    vtt_path: str | None
    input_lufs: float
    output_lufs: float  # the master before encoding
    gain_db: float
    limiter_reduction_db: float
    true_peak_dbtp: float  # the master before encoding
    near_silent: bool
    segments: list[dict[str, Any]]  # timing rows, one per segment (see ``segment_rows``)
    flac: deliver.Delivered | None = None  # the FLAC file as measured after writing
    lossy: deliver.Delivered | None = None  # the lossy file as measured after encoding
    m4b_part: export.BookPart | None = None  # this chapter's AAC for the M4B (joined by copy)
    m4b_part_figures: deliver.Delivered | None = None  # that stream as measured after encoding

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate


def segment_rows(
    chapter_index: int,
    segments: Sequence[SegmentSpan],
    spans: np.ndarray,
    pauses: np.ndarray,
    sample_rate: int,
) -> list[dict[str, Any]]:
    """Timing rows: where each segment sits in the finished chapter file (``spans`` and
    ``pauses`` as returned by ``stitch.stitch``)."""
    rows = []
    for i, (segment, (start, end), pause) in enumerate(zip(segments, spans, pauses)):
        rows.append(
            {
                "chapter_index": chapter_index,
                "segment_index": i,
                "key": segment.key,
                "text": stitch.strip_pause_markers(segment.text)[0],
                "start_sample": int(start),
                "end_sample": int(end),
                "start_s": int(start) / sample_rate,
                "end_s": int(end) / sample_rate,
                "pause_after_samples": int(pause),
                "pause_after_s": int(pause) / sample_rate,
            }
        )
    return rows


def _file_tags(title: str, book: BookInfo, track: int | None, audiobook: bool = False) -> Tags:
    return Tags(title=title, album=book.title or None, artist=book.author or None, track=track,
                track_total=book.chapter_count if track is not None else None, language=book.language,
                cover=book.cover, audiobook=audiobook)


def finish_chapter(
    audio: np.ndarray,
    segments: Sequence[SegmentSpan],
    out_dir: str | Path,
    chapter_index: int,
    title: str,
    options: FinishOptions = FinishOptions(),
    book_title: str | None = None,
    author: str | None = None,
    stem: str | None = None,
    book: BookInfo | None = None,
) -> FinishedChapter:
    """Stitch, normalize and export one chapter.

    Args:
        audio: the chapter's decoded waveform, float mono at ``options.sample_rate``.
        segments: the segments in reading order with their spans in ``audio``.
        out_dir: folder for ``<stem>.flac``, ``<stem>.<lossy>``, ``<stem>.srt``, ``<stem>.vtt``.
        stem: file name stem, default ``chapter_<index:03d>``.
        book: title, author, language, cover and chapter count for the tags (``book_title``
            and ``author`` fill in when it is not given); the track number is the index + 1.
    """
    if not segments:
        raise ValueError(f"chapter {chapter_index} ({title!r}) has no segments to finish")
    rate = options.sample_rate
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or f"chapter_{chapter_index:03d}"
    book = book or BookInfo(title=book_title, author=author)
    if book.cover is not None:
        book = replace(book, cover=export.portable_cover(book.cover))
    tags = _file_tags(title, book, chapter_index + 1)

    pauses = stitch.pause_samples([s.boundary for s in segments], [s.pause_s for s in segments], options.pauses, rate)
    stitched = stitch.stitch(
        audio,
        [(s.start, s.end) for s in segments],
        pauses,
        lead_in=stitch.seconds_to_samples(options.pauses.lead_in_s, rate),
        fade_samples=int(round(options.fade_ms * 1e-3 * rate)),
    )
    spans, inserted = stitched.spans, stitched.pauses.copy()
    chapter_audio = stitched.audio
    if options.write_m4b:
        # a whole number of AAC frames: then every chapter starts on a frame of the joined M4B
        # and its AAC stream fills exactly its span (see ``export.BookPart``)
        pad = -len(chapter_audio) % export.AAC_FRAME
        if pad:
            chapter_audio = np.concatenate([chapter_audio, np.zeros(pad, dtype=np.float32)])
            inserted[-1] += pad
    level = loudness.normalize_loudness(
        chapter_audio,
        rate,
        options.target,
        limiter=options.limiter,
        near_silent_lufs=options.near_silent_lufs,
    )
    num_samples = len(level.audio)
    del stitched, chapter_audio  # only the normalized copy is needed from here on
    target = options.delivery(adjust_loudness=not level.near_silent)

    # The lossy file and the chapter's AAC for the M4B are encoded by FFmpeg (through pipes),
    # decoded and measured, while the FLAC master is written: the encoders run side by side.
    # The master already keeps the lossy headroom, so the first encode normally passes.
    with ThreadPoolExecutor(max_workers=2) as pool:
        lossy_job = part_job = None
        lossy_name = options.lossy_format
        if lossy_name is not None:
            fmt = export.lossy_format(lossy_name)

            def write_lossy(pcm, destination: Path) -> Path:
                return export.encode_lossy(pcm, destination, lossy_name, options.lossy_bitrate, tags,
                                           speed=options.encoder_speed, sample_rate=rate)

            lossy_job = pool.submit(deliver.deliver, [level.audio], rate, out / f"{stem}.{fmt.extension}",
                                    write_lossy, target, level.true_peak_dbtp,
                                    source_lufs=level.output_lufs if _headroom_suffices(options) else None)
        if options.write_m4b:
            part_job = pool.submit(make_book_part, level.audio, part_path(out, stem), export.AAC_FRAME, options,
                                   target, level.true_peak_dbtp, level.output_lufs)
        # FLAC is lossless: the file holds ``level.audio`` to 24 bits (an error under 1e-6 dB),
        # so the master's own measurement is the file's (the tests check it with FFmpeg's meter)
        flac_path = export.write_flac(out / f"{stem}.flac", level.audio, rate, subtype=options.flac_subtype, tags=tags)
        flac = deliver.Delivered(str(flac_path), level.output_lufs, level.true_peak_dbtp, 1, None,
                                 options.limiter.ceiling_db, target.passes_figures(level.output_lufs,
                                                                                 level.true_peak_dbtp))
        lossy = None if lossy_job is None else lossy_job.result()
        part, part_figures = (None, None) if part_job is None else part_job.result()

    rows = segment_rows(chapter_index, segments, spans, inserted, rate)
    srt_path = vtt_path = None
    if options.subtitles is not None:
        cues = subtitles.segment_cues([(r["start_s"], r["end_s"], r["text"]) for r in rows], options.subtitles)
        srt_path = subtitles.write_srt(out / f"{stem}.srt", cues)
        vtt_path = subtitles.write_webvtt(out / f"{stem}.vtt", cues)

    return FinishedChapter(
        chapter_index=chapter_index,
        title=title,
        sample_rate=rate,
        num_samples=num_samples,
        flac_path=flac.path,
        lossy_path=None if lossy is None else lossy.path,
        srt_path=None if srt_path is None else str(srt_path),
        vtt_path=None if vtt_path is None else str(vtt_path),
        input_lufs=level.input_lufs,
        output_lufs=level.output_lufs,
        gain_db=level.gain_db,
        limiter_reduction_db=level.limiter_reduction_db,
        true_peak_dbtp=level.true_peak_dbtp,
        near_silent=level.near_silent,
        segments=rows,
        flac=flac,
        lossy=lossy,
        m4b_part=part,
        m4b_part_figures=part_figures,
    )


# the bitrate from which ``lossy_headroom_db`` (1 dB) covers the encoders' overshoot on speech
_HEADROOM_BITS = 64_000


def _covered_by_headroom(bitrate: str) -> bool:
    text = export.normalize_bitrate(bitrate)
    return (int(text[:-1]) * 1000 if text.endswith("k") else int(text)) >= _HEADROOM_BITS


def _headroom_suffices(options: FinishOptions) -> bool:
    """Whether the master keeps the lossy headroom (every lossy bitrate is high enough for
    it): then the first encode gets the master with at most a static gain (the probe's
    prediction, within the headroom), not leveled and limited again."""
    return options.makes_lossy and options.lossy_headroom_db >= 1.5


def part_path(out_dir: str | Path, stem: str) -> Path:
    """Where a chapter's AAC stream for the M4B waits for ``finish_book`` (a hidden file)."""
    return Path(out_dir) / f".{stem}.m4b.aac"


def _part_plan(audio: np.ndarray, head_trim: int) -> tuple[int, int, int]:
    """(head_trim, frames, tail_cut) for a chapter's AAC stream that should leave out its first
    ``head_trim`` samples (negative: prepend that much silence).

    Only silence may be left out. When the head is not silent, the same number of frames
    is kept by cutting the tail instead (if that is silent: the chapter then decodes one
    frame late within its span); failing both, the stream is a frame longer than the span.
    """
    n = len(audio)
    frames = export.part_frames(n, head_trim)
    if head_trim <= 0 or not audio[:head_trim].any():
        return head_trim, frames, 0
    kept = (frames - 1) * export.AAC_FRAME
    if kept <= n and not audio[kept:].any():
        return 0, frames, n - kept
    return 0, export.part_frames(n, 0), 0


def _whole_frames(pieces):
    """The samples of ``pieces``, padded with silence to a whole number of AAC frames."""
    total = 0
    for piece in pieces:
        total += len(piece)
        yield piece
    if total % export.AAC_FRAME:
        yield np.zeros(-total % export.AAC_FRAME, dtype=np.float32)


def make_book_part(
    audio: np.ndarray,
    destination: Path,
    head_trim: int,
    options: FinishOptions,
    target: deliver.DeliveryTarget | None = None,
    source_peak_db: float | None = None,
    source_lufs: float | None = None,
) -> tuple[export.BookPart, deliver.Delivered | None]:
    """Encode a chapter's master as its AAC stream for the M4B (see ``export.BookPart``).

    With ``target`` the stream is measured after encoding and corrected until it passes,
    like every delivered file (the M4B is these streams, copied); without, it is encoded once.
    """
    head_trim, frames, _ = _part_plan(audio, head_trim)
    count = (frames - 1) * export.AAC_FRAME
    source = audio[max(0, head_trim):max(0, head_trim) + count]
    if head_trim < 0:
        source = np.concatenate([np.zeros(-head_trim, dtype=np.float32), audio[:count + head_trim]])
    rate = options.sample_rate

    # (padding in the encoder, not the source: the probe's excerpts go through it too)
    def write(pcm, path: Path) -> Path:
        return export.encode_adts(_whole_frames(pcm), path, rate, options.m4b_bitrate, options.encoder_speed)

    if target is None:
        path, figures = write(iter([source]), destination), None
    else:
        figures = deliver.deliver([source], rate, destination, write, target, source_peak_db,
                                  source_lufs=source_lufs if _headroom_suffices(options) else None)
        path = Path(figures.path)
    written = export.adts_frame_count(path)
    if written != frames:
        raise export.FfmpegError(f"{path.name}: the AAC encoder wrote {written} frames where {frames} were expected")
    return export.BookPart(str(path), frames, head_trim, len(audio)), figures


def finish_book(
    chapters: Sequence[FinishedChapter],
    out_path: str | Path,
    title: str,
    author: str | None = None,
    cover: export.Cover | None = None,
    options: FinishOptions = FinishOptions(),
    language: str | None = None,
) -> deliver.Delivered | None:
    """Write the book's M4B from finished chapters (in the given order), measured like every
    delivered file; ``None`` when ``options.write_m4b`` is off.

    The M4B is the chapters' AAC streams joined by stream copy (``export.write_m4b_from_parts``):
    no encode of the whole book. A chapter without its stream (finished elsewhere, or by
    hand) gets one here from its FLAC master. Should the joined file miss the target, the
    book is encoded whole from the masters instead and corrected like any delivered file.
    The book's loudness is corrected only when its chapters are on target (a near-silent
    chapter is never boosted, here either)."""
    if not options.write_m4b:
        return None
    ordered = list(chapters)
    if not ordered:
        raise ValueError("finish_book needs at least one finished chapter")
    rates = {c.sample_rate for c in ordered}
    if len(rates) > 1:
        raise ValueError(f"chapters have different sample rates {sorted(rates)}; finish them with one setting")
    rate = ordered[0].sample_rate
    out_path = Path(out_path)
    on_target = all(not c.near_silent and abs(c.output_lufs - options.target) <= options.loudness_tolerance_lu
                    for c in ordered)
    target = options.delivery(adjust_loudness=on_target)

    parts = _book_parts(ordered, out_path.parent, options)
    joined = export.write_m4b_from_parts(parts, [c.title for c in ordered], out_path, rate, title, author, cover,
                                         language=language)
    measured = deliver.measure_file(joined)
    made_here = [p for p, c in zip(parts, ordered) if c.m4b_part is None or p.path != c.m4b_part.path]
    if target.passes(measured):
        for part in parts:
            Path(part.path).unlink(missing_ok=True)
        passes = max([1] + [c.m4b_part_figures.passes for c in ordered if c.m4b_part_figures is not None])
        return deliver.Delivered(str(joined), measured.lufs, measured.true_peak_dbtp, passes, None,
                                 target.peak_limit_db, True)
    for part in made_here:
        Path(part.path).unlink(missing_ok=True)

    # the joined streams miss (masters limited without the lossy headroom, say): one encode
    # of the whole book from the masters, measured and corrected
    book_chapters = [export.BookChapter(path=c.flac_path, title=c.title, num_samples=c.num_samples) for c in ordered]

    def write(pcm, destination: Path) -> Path:
        return export.write_m4b(book_chapters, destination, sample_rate=rate, title=title, author=author, cover=cover,
                                bitrate=options.m4b_bitrate, speed=options.encoder_speed, language=language, pcm=pcm)

    peak = max(c.true_peak_dbtp for c in ordered)
    delivered = deliver.deliver([c.flac_path for c in ordered], rate, out_path, write, target, peak)
    for part in parts:
        Path(part.path).unlink(missing_ok=True)
    return delivered


def _book_parts(chapters: Sequence[FinishedChapter], work_dir: Path, options: FinishOptions) -> list[export.BookPart]:
    """Each chapter's AAC stream, made here from the master where the chapter has none.

    A stream made here leaves out as much leading silence as puts the chapter's audio where
    the sum of the preceding chapters' lengths says (see ``export.BookPart``)."""
    parts: list[export.BookPart | None] = []
    todo = []
    block = position = 0  # where the next part begins in the joined stream; where its chapter should
    for chapter in chapters:
        part = chapter.m4b_part
        if part is None or not Path(part.path).is_file() or part.num_samples != chapter.num_samples:
            wanted = block + export.AAC_FRAME - position
            audio = _load_master(chapter.flac_path)
            _, frames, _ = _part_plan(audio, wanted)  # (make_book_part plans the same again)
            del audio
            todo.append((len(parts), chapter, wanted))
            parts.append(None)
        else:
            frames = part.frames
            parts.append(part)
        block += frames * export.AAC_FRAME
        position += chapter.num_samples

    def make(item: tuple[int, FinishedChapter, int]) -> export.BookPart:
        _, chapter, head_trim = item
        destination = part_path(work_dir, f"book-{chapter.chapter_index:03d}-{Path(chapter.flac_path).stem}")
        return make_book_part(_load_master(chapter.flac_path), destination, head_trim, options)[0]

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        for (index, _, _), part in zip(todo, pool.map(make, todo)):
            parts[index] = part
    made = [part for part in parts if part is not None]
    assert len(made) == len(parts)  # every chapter's part: kept, or made just now
    return made


def _load_master(path: str) -> np.ndarray:
    audio, _ = soundfile.read(path, dtype="float32", always_2d=False)
    return audio if audio.ndim == 1 else audio.mean(axis=1)

