"""Narrating chapters: segment after segment, each a continuation of the one before.

A `Narrator` holds a loaded model and codec (one per GPU actor) and narrates several chapters
at once: every round it takes the next unfinished segment of each chapter and generates them
as one batch. Segment k is prompted with the voice reference and, as its continuation prefix,
the stored codes and text of segment k-1, so the prefix is data the store can always give
back: a rerun after a crash builds exactly the same prompts. Each finished segment is stored
under its key at once; stored keys are skipped.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import torch

from moss_model.generation import GenerationStats, RowResult
from moss_model.loading import TTS
from moss_model.processor import SpeechRequest
from moss_model.sampling import DecodingParams
from pipeline.store import SegmentStore, StoredSegment
from pipeline.voice import Voice

FRAMES_PER_SECOND = 12.5


@dataclass(frozen=True)
class NarrationOptions:
    decoding: DecodingParams = DecodingParams()
    carryover_bound_frames: int = 400  # a longer previous segment is not carried (see prefix_for)
    max_attempts: int = 3
    check_durations: bool = True
    min_duration_ratio: float = 0.4  # of the estimated frames
    max_duration_ratio: float = 2.5
    silence_dbfs: float = -50.0  # RMS below this is near-silent
    max_frames_per_segment: int = 1500
    frames_slack: int = 50  # frame limit = est * max_duration_ratio + slack

    def frame_limit(self, est_frames: int) -> int:
        return min(self.max_frames_per_segment, int(est_frames * self.max_duration_ratio) + self.frames_slack)


@dataclass(frozen=True)
class SegmentTask:
    key: str
    chapter_index: int
    segment_index: int
    model_text: str
    est_frames: int
    language: str
    previous_key: str | None  # the segment this one continues (None for a chapter's first)
    previous_text: str | None


@dataclass(frozen=True)
class ChapterTask:
    chapter_index: int
    title: str
    segments: tuple[SegmentTask, ...]

    @property
    def est_frames(self) -> int:
        return sum(s.est_frames for s in self.segments)


@dataclass
class ChapterReport:
    chapter_index: int
    generated: int = 0
    reused: int = 0
    flagged: int = 0
    attempts: int = 0
    frames: int = 0
    model_seconds: float = 0.0  # inside the model's prefill and steps
    wall_seconds: float = 0.0  # of the whole narrate() call, shared by the chapters it narrated
    call_id: str = ""  # which narrate() call


def segment_seed(key: str, attempt: int) -> int:
    """Seeds come from the key (and the attempt), so a rerun gives the same audio."""
    return int(hashlib.sha256(f"{key}:{attempt}".encode()).hexdigest()[:15], 16)


def join_prefix_text(prefix_text: str, text: str) -> str:
    """Prefix transcript + new text, as the model reads them (a space between Latin words)."""
    if prefix_text and text and prefix_text[-1].isascii() and prefix_text[-1] not in " \n" and text[0].isascii():
        return prefix_text + " "
    return prefix_text


@dataclass
class _Attempt:
    task: SegmentTask
    attempt: int = 0
    prefix_digest: str | None = None
    last_checks: list[str] = field(default_factory=list)


class Narrator:
    def __init__(self, tts: TTS, codec, voice: Voice, options: NarrationOptions, store: SegmentStore) -> None:
        self.tts = tts
        self.codec = codec
        self.voice = voice
        self.options = options
        self.store = store
        self._recent: dict[str, StoredSegment] = {}  # previous segments of the chapters in flight

    def narrate(self, chapters: list[ChapterTask]) -> list[ChapterReport]:
        """Narrate the chapters to the end, batching their current segments; return one report each."""
        started = time.perf_counter()
        call_id = uuid.uuid4().hex
        reports = {c.chapter_index: ChapterReport(c.chapter_index, call_id=call_id) for c in chapters}
        cursors = {c.chapter_index: 0 for c in chapters}
        attempts: dict[str, _Attempt] = {}
        active = list(chapters)
        while active:
            batch: list[_Attempt] = []
            for chapter in list(active):
                report = reports[chapter.chapter_index]
                while cursors[chapter.chapter_index] < len(chapter.segments):
                    task = chapter.segments[cursors[chapter.chapter_index]]
                    if task.key in attempts or not self.store.has(task.key):
                        break
                    report.reused += 1
                    report.frames += self._remember(self.store.get(task.key)).frames
                    cursors[chapter.chapter_index] += 1
                if cursors[chapter.chapter_index] == len(chapter.segments):
                    active.remove(chapter)
                    continue
                task = chapter.segments[cursors[chapter.chapter_index]]
                batch.append(attempts.setdefault(task.key, _Attempt(task)))
            if not batch:
                break
            for state, stored in zip(batch, self._generate(batch, reports)):
                if stored is None:
                    continue
                report = reports[state.task.chapter_index]
                report.generated += 1
                report.flagged += bool(stored.facts["flags"])
                report.frames += stored.frames
                cursors[state.task.chapter_index] += 1
                del attempts[state.task.key]
        for report in reports.values():
            report.wall_seconds = time.perf_counter() - started
        self._recent.clear()
        return [reports[c.chapter_index] for c in chapters]

    def _generate(self, batch: list[_Attempt], reports: dict[int, ChapterReport]) -> list[StoredSegment | None]:
        """One batch of attempts; a segment that passes, or runs out of attempts, is stored."""
        prompts, seeds = [], []
        for state in batch:
            request, state.prefix_digest = self.request_for(state.task)
            prompts.append(self.tts.processor.build_prompt(request))
            seeds.append(segment_seed(state.task.key, state.attempt))
        limit = max(self.options.frame_limit(s.task.est_frames) for s in batch)
        stats = GenerationStats()
        results = self.tts.generator.generate(prompts, seeds, self.options.decoding, max_new_frames=limit, stats=stats)
        model_seconds = stats.prefill_seconds + stats.decode_seconds
        stored: list[StoredSegment | None] = []
        for state, seed, result in zip(batch, seeds, results):
            report = reports[state.task.chapter_index]
            report.attempts += 1
            report.model_seconds += model_seconds / len(batch)
            checks = self.check(state.task, result)
            state.attempt += 1
            if checks and state.attempt < self.options.max_attempts:
                state.last_checks = checks
                stored.append(None)
                continue
            segment = StoredSegment(
                key=state.task.key,
                codes=result.frames.numpy().astype(np.int16),
                facts={
                    "chapter_index": state.task.chapter_index,
                    "segment_index": state.task.segment_index,
                    "text": state.task.model_text,
                    "seed": seed,
                    "attempts": state.attempt,
                    "flags": checks,
                    "est_frames": state.task.est_frames,
                    "prefix_key": state.task.previous_key if state.prefix_digest else None,
                    "prefix_digest": state.prefix_digest,
                },
            )
            self.store.put(segment)
            stored.append(self._remember(segment))
        return stored

    def _remember(self, segment: StoredSegment) -> StoredSegment:
        self._recent[segment.key] = segment
        return segment

    def _previous(self, key: str) -> StoredSegment:
        return self._recent.get(key) or self._remember(self.store.get(key))

    def request_for(self, task: SegmentTask) -> tuple[SpeechRequest, str | None]:
        """The prompt of a segment, and a digest of the prefix codes it carries (None: no prefix)."""
        voice = self.voice
        reference = [torch.from_numpy(voice.codes.astype(np.int64))] if voice.codes is not None else None
        prefix_codes, prefix_text = None, None
        if task.previous_key is not None:
            previous = self._previous(task.previous_key)
            if 0 < previous.frames <= self.options.carryover_bound_frames:
                prefix_codes, prefix_text = previous.codes, task.previous_text
        elif voice.codes is not None and voice.text:
            prefix_codes, prefix_text = voice.codes, voice.text  # continuation cloning from the reference
        if prefix_codes is None:
            return SpeechRequest(text=task.model_text, reference=reference), None
        digest = codes_digest(prefix_codes)
        request = SpeechRequest(
            text=task.model_text,
            reference=reference,
            prefix_codes=torch.from_numpy(prefix_codes.astype(np.int64)),
            prefix_text=join_prefix_text(prefix_text or "", task.model_text),
        )
        return request, digest

    def check(self, task: SegmentTask, result: RowResult) -> list[str]:
        """Reasons to regenerate (empty when the segment is fine)."""
        options = self.options
        frames = int(result.frames.shape[0])
        checks = []
        if result.hit_frame_limit or not result.finished:
            checks.append("frame_limit")
        if frames == 0:
            return checks + ["no_audio"]
        if options.check_durations:
            if frames < options.min_duration_ratio * task.est_frames:
                checks.append("too_short")
            if frames > options.max_duration_ratio * task.est_frames:
                checks.append("too_long")  # also the re-read-the-prefix failure of continuation
        if self._rms_dbfs(result.frames) < options.silence_dbfs:
            checks.append("near_silent")
        return checks

    def _rms_dbfs(self, frames: torch.Tensor) -> float:
        codes = frames.T[None].to(self.codec.device)  # 1, K, F
        audio = self.codec.decode(codes).audio[0].float()
        rms = float(audio.pow(2).mean().sqrt())
        return 20 * np.log10(max(rms, 1e-10))


def codes_digest(codes: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(codes, dtype=np.int16).tobytes()).hexdigest()[:16]
