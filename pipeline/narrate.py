"""Narrating runs: chains of segments, each a continuation of the one before, on the continuous engine.

A `Narrator` holds a loaded model and codec (one per GPU actor) and an engine with a pool of
row slots. It narrates many runs at once (a run is a chapter, or a stretch of paragraphs of a
long chapter, see `pipeline.plan`): it keeps the pool full by starting runs, longest first, and
submits a run's next segment the moment the previous one is accepted, while the other rows
keep decoding. Segment k is prompted with the voice reference and, as its continuation prefix,
the stored codes and text of segment k-1, so the prefix is data the store can always give
back: a rerun after a crash builds exactly the same prompts. A run's first segment starts from
the voice (continuation cloning when its transcript is known). Each finished segment is stored
under its key at once; stored keys are skipped; a key wanted by several runs at once is
generated once. Seeds, frame limits and retries belong to the segment, and the engine's rows
do not depend on what shares the pool, so the audio is the same under any schedule.

Finished segments are decoded on the narrator's device, in batches on a worker thread, off the
engine's loop (`pipeline.checks`, `pipeline.segment_audio`); the silence check reads that audio
and the store keeps it with the codes, so finishing never runs the codec again.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from moss_model.engine import Engine, EngineStats, RowResult
from moss_model.loading import TTS
from moss_model.processor import SpeechRequest
from moss_model.sampling import DecodingParams
from pipeline.checks import SegmentChecker, segment_checks
from pipeline.normalize_script import language_name
from pipeline.segment_audio import decode_segments, level_dbfs
from pipeline.store import SegmentStore, StoredSegment
from pipeline.voice import Voice

FRAMES_PER_SECOND = 12.5
PROMPT_TEXT_TOKENS = 1280  # room in a row for the chat template, a segment's text and its prefix's text


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
    capacity: int | None = None  # engine row slots; None: from free memory on CUDA, the engine's default on CPU
    language_tags: bool = False  # name each segment's language in its prompt (checkpoints that read it: v1.5)

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
class RunTask:
    """A chain of segments narrated as continuations, from a chapter's start or a paragraph of it."""

    chapter_index: int
    run_index: int  # within the chapter
    title: str
    segments: tuple[SegmentTask, ...]

    @property
    def est_frames(self) -> int:
        return sum(s.est_frames for s in self.segments)

    def est_steps(self, n_vq: int = 32) -> int:
        """Engine steps the chain takes: each segment's frames, then its delay tail and a little text
        (a run of many short segments takes longer than its audio suggests)."""
        return self.est_frames + len(self.segments) * (n_vq + 2)


@dataclass
class ChapterReport:
    chapter_index: int
    generated: int = 0
    reused: int = 0
    flagged: int = 0
    attempts: int = 0
    frames: int = 0  # of every segment of the chapter's runs, generated or reused
    generated_frames: int = 0
    model_seconds: float = 0.0  # inside the model's prefill and steps, shared by frames generated
    wall_seconds: float = 0.0  # of the whole narrate() call, shared by the chapters it narrated
    call_id: str = ""  # which narrate() call
    row_steps: int = 0  # the call's engine figures (the same on every report of one call)
    useful_row_steps: int = 0


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
    seed: int = 0
    prefix_digest: str | None = None
    last_checks: list[str] = field(default_factory=list)


class Narrator:
    def __init__(self, tts: TTS, codec, voice: Voice, options: NarrationOptions, store: SegmentStore) -> None:
        self.tts = tts
        self.codec = codec
        self.voice = voice
        self.options = options
        self.store = store
        self._recent: dict[str, StoredSegment] = {}  # previous segments of the runs in flight
        self._engine: Engine | None = None
        self.generated_frames = 0  # frames of the segments this narrator stored (for progress)
        self.threaded_checks = True  # measure segments on a worker thread (see pipeline.checks)

    @property
    def engine(self) -> Engine:
        """The engine, built on first use with rows long enough for any segment of this voice."""
        if self._engine is None:
            n_vq = self.tts.config.n_vq
            voice_frames = 0 if self.voice.codes is None else int(self.voice.codes.shape[0])
            block = voice_frames + n_vq + 2  # an audio block: start, frames, delay tail, end
            prefix = max(self.options.carryover_bound_frames, voice_frames) + 1
            generated = self.options.max_frames_per_segment + n_vq + 32
            self._engine = Engine(self.tts.model, self.tts.processor, self.options.capacity,
                                  max_row_tokens=PROMPT_TEXT_TOKENS + block + prefix + generated)
        return self._engine

    def narrate(self, runs: list[RunTask]) -> list[ChapterReport]:
        """Narrate the runs to the end, keeping the engine's rows full; one report per chapter touched."""
        started = time.perf_counter()
        call_id = uuid.uuid4().hex
        engine = self.engine
        before = replace(engine.stats)
        reports: dict[int, ChapterReport] = {}
        n_vq = self.tts.config.n_vq
        queue = deque(sorted(runs, key=lambda r: r.est_steps(n_vq), reverse=True))  # the longest chains first
        cursors = {id(run): 0 for run in runs}
        attempts: dict[str, _Attempt] = {}  # key -> its attempt, while in flight
        waiting: dict[str, list[RunTask]] = {}  # key in flight -> the runs standing at it
        requests: dict[int, str] = {}  # engine request id -> key

        def report_for(run: RunTask) -> ChapterReport:
            return reports.setdefault(run.chapter_index, ChapterReport(run.chapter_index, call_id=call_id))

        def submit(state: _Attempt) -> None:
            request, state.prefix_digest = self.request_for(state.task)
            state.seed = segment_seed(state.task.key, state.attempt)
            limit = self.options.frame_limit(state.task.est_frames)
            request_id = engine.submit(self.tts.processor.build_prompt(request), state.seed, self.options.decoding, limit)
            requests[request_id] = state.task.key

        def advance(run: RunTask) -> None:
            """Move the run past stored segments to the next one, and have that one generated."""
            report = report_for(run)
            while cursors[id(run)] < len(run.segments):
                task = run.segments[cursors[id(run)]]
                if task.key in attempts:  # another run wants it too: generated once
                    waiting[task.key].append(run)
                    return
                if not self.store.has(task.key):
                    attempts[task.key] = state = _Attempt(task)
                    waiting[task.key] = [run]
                    submit(state)
                    return
                report.reused += 1
                report.frames += self._remember(self.store.get(task.key)).frames
                cursors[id(run)] += 1

        # Segments are measured (decoded) on a worker thread while the engine keeps stepping.
        checker = SegmentChecker(self.measure_segments, getattr(self.codec, "device", None), threaded=self.threaded_checks)
        try:
            while queue or requests or checker.pending:
                while queue and engine.occupancy + engine.queued < engine.capacity:
                    advance(queue.popleft())
                if requests:
                    for finished in engine.step():
                        key = requests.pop(finished.request_id)
                        checker.submit((key, finished.result), finished.result.frames)
                for (key, result), audio in checker.collect(wait=not requests):  # wait only when the engine is idle
                    state = attempts[key]
                    stored = self._accept(state, result, audio, report_for(waiting[key][0]))
                    if stored is None:
                        submit(state)  # again, with the next attempt's seed
                        continue
                    del attempts[key]
                    for run in waiting.pop(key):
                        report = report_for(run)
                        report.generated += 1
                        report.flagged += bool(stored.facts["flags"])
                        report.frames += stored.frames
                        report.generated_frames += stored.frames
                        cursors[id(run)] += 1
                        advance(run)
                    self._recent.pop(state.task.previous_key, None)  # carried already: the store has it if wanted again
        finally:
            checker.close()

        spent = engine.stats
        model_seconds = (spent.prefill_seconds - before.prefill_seconds) + (spent.step_seconds - before.step_seconds)
        generated_frames = sum(r.generated_frames for r in reports.values()) or 1
        for report in reports.values():
            report.wall_seconds = time.perf_counter() - started
            report.model_seconds = model_seconds * report.generated_frames / generated_frames
            report.row_steps = spent.row_steps - before.row_steps
            report.useful_row_steps = spent.useful_row_steps - before.useful_row_steps
        self._recent.clear()
        return [reports[c] for c in sorted(reports)]

    @property
    def stats(self) -> EngineStats:
        return self.engine.stats

    def progress(self) -> dict:
        """Figures for a progress display, safe to read while `narrate` runs in another thread."""
        engine, stats = self._engine, self._engine.stats if self._engine else EngineStats()
        return {"rows": engine.occupancy if engine else 0, "generated_frames": self.generated_frames,
                "row_steps": stats.row_steps, "useful_row_steps": stats.useful_row_steps}

    def _accept(self, state: _Attempt, result: RowResult, audio: SegmentAudio, report: ChapterReport) -> StoredSegment | None:
        """Store a segment that passes its checks, or has no attempts left (flagged); None: try again."""
        report.attempts += 1
        checks = self.check(state.task, result, audio.level_dbfs)
        state.attempt += 1
        if checks and state.attempt < self.options.max_attempts:
            state.last_checks = checks
            return None
        segment = StoredSegment(
            key=state.task.key,
            codes=result.frames.numpy().astype(np.int16),
            facts={
                "chapter_index": state.task.chapter_index,
                "segment_index": state.task.segment_index,
                "text": state.task.model_text,
                "seed": state.seed,
                "attempts": state.attempt,
                "flags": checks,
                "est_frames": state.task.est_frames,
                "prefix_key": state.task.previous_key if state.prefix_digest else None,
                "prefix_digest": state.prefix_digest,
            },
            audio=audio.samples,
            sample_rate=audio.sample_rate,
        )
        self.store.put(segment)
        self.generated_frames += segment.frames
        return self._remember(segment)

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
        language = language_name(task.language) if self.options.language_tags else None
        if prefix_codes is None:
            return SpeechRequest(text=task.model_text, reference=reference, language=language), None
        digest = codes_digest(prefix_codes)
        request = SpeechRequest(
            text=task.model_text,
            reference=reference,
            language=language,
            prefix_codes=torch.from_numpy(prefix_codes.astype(np.int64)),
            prefix_text=join_prefix_text(prefix_text or "", task.model_text),
        )
        return request, digest

    def check(self, task: SegmentTask, result: RowResult, level: float) -> list[str]:
        """Reasons to regenerate (empty when the segment is fine); level: its RMS level in dBFS."""
        return segment_checks(result, task.est_frames, level, self.options)

    def measure_segments(self, frames: list[torch.Tensor]) -> list[SegmentAudio]:
        """Finished segments' codes -> their audio (each decoded alone, see pipeline.segment_audio) and level."""
        rate = int(self.codec.sampling_rate)
        return [SegmentAudio(level_dbfs(audio), audio, rate) for audio in decode_segments(self.codec, frames)]


@dataclass(frozen=True)
class SegmentAudio:
    """A finished segment's decoded audio (None where nothing was decoded) and its RMS level in dBFS."""

    level_dbfs: float
    samples: np.ndarray | None = None
    sample_rate: int | None = None


def codes_digest(codes: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(codes, dtype=np.int16).tobytes()).hexdigest()[:16]
