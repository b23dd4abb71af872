"""Finishing: a decoded chapter becomes its master, lossy file, subtitles and timing rows;
finished chapters become the book's M4B. Every delivered file is measured after it is
written and corrected until it passes (``pipeline.deliver``); its figures are kept for the index.

Plain functions over arrays and dataclasses, so a CPU Ray task per chapter (and one for
the book) can call them, and ``job=finish`` can rerun them from stored segments with
other options. Nothing here needs the model, Ray or Hydra.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline import deliver, export, loudness, stitch, subtitles
from pipeline.tags import Cover, Tags


@dataclass(frozen=True)
class FinishOptions:
    sample_rate: int = stitch.SAMPLE_RATE
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

    @property
    def target(self) -> float:
        return loudness.resolve_target(self.loudness_preset, self.target_lufs)

    @property
    def limiter(self) -> loudness.LimiterOptions:
        """The masters' limiter: it holds them under the ceiling less the guard."""
        return loudness.LimiterOptions(
            ceiling_db=self.true_peak_db - self.peak_guard_db,
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

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    def chapter_row(self) -> dict[str, Any]:
        """This chapter as one flat row for the Parquet index (everything but segments)."""
        row = {k: v for k, v in asdict(self).items() if k not in ("segments", "flac", "lossy")}
        row["duration_s"] = self.duration_s
        for name in ("flac", "lossy"):
            delivered = getattr(self, name)
            row[f"{name}_lufs"] = None if delivered is None else delivered.lufs
            row[f"{name}_true_peak_dbtp"] = None if delivered is None else delivered.true_peak_dbtp
            row[f"{name}_passes"] = None if delivered is None else delivered.passes
        return row


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
    level = loudness.normalize_loudness(
        stitched.audio,
        rate,
        options.target,
        limiter=options.limiter,
        near_silent_lufs=options.near_silent_lufs,
    )
    num_samples = len(level.audio)
    spans, inserted = stitched.spans, stitched.pauses
    del stitched  # only the normalized copy is needed from here on
    target = options.delivery(adjust_loudness=not level.near_silent)

    # The lossy file (encoded by FFmpeg through a pipe, decoded and measured, maybe again)
    # is made while the FLAC master is written and measured: two cores busy instead of one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        lossy_job = None
        if options.lossy_format is not None:
            fmt = export.lossy_format(options.lossy_format)

            def write_lossy(pcm, destination: Path) -> Path:
                return export.encode_lossy(pcm, destination, options.lossy_format, options.lossy_bitrate, tags,
                                           speed=options.encoder_speed, sample_rate=rate)

            lossy_job = pool.submit(deliver.deliver, [level.audio], rate, out / f"{stem}.{fmt.extension}",
                                    write_lossy, target, level.true_peak_dbtp)
        # FLAC is lossless: the file holds ``level.audio`` to 24 bits (an error under 1e-6 dB),
        # so the master's own measurement is the file's (the tests check it with FFmpeg's meter)
        flac_path = export.write_flac(out / f"{stem}.flac", level.audio, rate, subtype=options.flac_subtype, tags=tags)
        flac = deliver.Delivered(str(flac_path), level.output_lufs, level.true_peak_dbtp, 1, None,
                                 options.limiter.ceiling_db, target.passes_figures(level.output_lufs,
                                                                                 level.true_peak_dbtp))
        lossy = None if lossy_job is None else lossy_job.result()

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
    )


def finish_book(
    chapters: Sequence[FinishedChapter],
    out_path: str | Path,
    title: str,
    author: str | None = None,
    cover: export.Cover | None = None,
    options: FinishOptions = FinishOptions(),
    language: str | None = None,
) -> deliver.Delivered | None:
    """Write the book's M4B from finished chapters (in the given order), measured and
    corrected like every delivered file; ``None`` when ``options.write_m4b`` is off.

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
    book_chapters = [export.BookChapter(path=c.flac_path, title=c.title, num_samples=c.num_samples) for c in ordered]
    on_target = all(not c.near_silent and abs(c.output_lufs - options.target) <= options.loudness_tolerance_lu
                    for c in ordered)

    def write(pcm, destination: Path) -> Path:
        return export.write_m4b(book_chapters, destination, sample_rate=rate, title=title, author=author, cover=cover,
                                bitrate=options.m4b_bitrate, speed=options.encoder_speed, language=language, pcm=pcm)

    peak = max(c.true_peak_dbtp for c in ordered)
    return deliver.deliver([c.flac_path for c in ordered], rate, out_path, write,
                           options.delivery(adjust_loudness=on_target), peak)
