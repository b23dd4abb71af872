"""Narrating runs: chains of segments, each a continuation of the one before, on the continuous engine.

A `Narrator` holds a loaded model and codec (one per GPU actor) and an engine with a pool of
row slots. It narrates many runs at once (a run is a chapter, or a stretch of paragraphs of a
long chapter, see `pipeline.text.plan`): it keeps the pool full by starting runs, longest first, and
submits a run's next segment the moment the previous one is accepted, while the other rows
keep decoding. Segment k is prompted with the voice reference and, as its continuation prefix,
the stored codes and text of segment k-1, so the prefix is data the store can always give
back: a rerun after a crash builds exactly the same prompts. A run's first segment starts from
the voice (continuation cloning when its transcript is known). Each finished segment is stored
under its key at once; stored keys are skipped; a key wanted by several runs at once is
generated once. Seeds, frame limits and retries belong to the segment, and the engine's rows
do not depend on what shares the pool, so the audio is the same under any schedule.

Finished segments are decoded on the narrator's device, in batches on a worker thread, off the
engine's loop (`pipeline.narration.checks`, `pipeline.narration.segment_audio`); the silence check reads that audio
and the store keeps it with the codes, so finishing never runs the codec again.

Quality (`NarrationOptions.quality`, `pipeline.quality`): on the same worker thread each batch of
decoded segments gets its speaker embeddings; the key-chosen WER sample of them is then
transcribed on a second thread (PocketSphinx decodes in a process of its own), so a slow
transcription holds up only its own run. Accepting a segment then compares it with the voice reference and with the
accepted segments before it in its own run (`RunSimilarity`, one per run, rebuilt from the
embeddings stored in the facts of the run's stored segments when a run resumes), and `decide`
keeps it, regenerates it with the next seed (re-anchored, i.e. without the carried prefix, when
its voice drifted) or keeps it flagged. What a segment is compared with depends only on its own
run, so the decisions, like the audio, do not depend on the schedule.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np
import torch

from moss_model.codec import AudioCodec
from moss_model.engine import Engine, EngineStats, RowResult
from moss_model.loading import TTS
from moss_model.processor import SpeechRequest
from moss_model.sampling import DecodingParams
from pipeline.narration.checks import SegmentChecker, segment_checks
from pipeline.narration.segment_audio import audio_to_flac, decode_segments, level_dbfs
from pipeline.narration.store import SegmentStore, StoredSegment
from pipeline.narration.voice import Voice
from pipeline.quality.decisions import OK, REGENERATE, Decision, Distribution, QualityOptions, decide
from pipeline.quality.measures import Measured, QualityMeasurer
from pipeline.quality.similarity import RunSimilarity
from pipeline.reading.script import language_name

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
    quality: QualityOptions | None = None  # per-segment speaker similarity and WER (pipeline.quality); None: off

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
    generated_seconds: float = 0.0  # the generated frames' audio, at the codec's frame rate
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
    reanchor: bool = False  # prompted without the carried prefix (a retry after the voice drifted)
    quality_log: list[dict] = field(default_factory=list)  # each attempt's quality decision


class Narrator:
    def __init__(self, tts: TTS, codec: AudioCodec, voice: Voice, options: NarrationOptions,
                 store: SegmentStore) -> None:
        self.tts = tts
        self.codec = codec
        self.voice = voice
        self.options = options
        self.store = store
        self._recent: dict[str, StoredSegment] = {}  # previous segments of the runs in flight
        self._engine: Engine | None = None
        self.generated_frames = 0  # frames of the segments this narrator stored (for progress)
        self.threaded_checks = True  # measure segments on a worker thread (see pipeline.narration.checks)
        self._measurer: QualityMeasurer | None = None  # built once, on the first narrate() with quality on
        # The voice reference's audio for the similarity measure, (samples, rate); None: voice.codes
        # decoded by the codec (what the model was given). A tiny random codec decodes any codes to noise.
        self.reference_audio: tuple[np.ndarray, int] | None = None
        # (digest of the reference, None: the voice has none; its embedding)
        self._reference: tuple[str | None, np.ndarray | None] | None = None
        self._runs: dict[tuple[int, int], RunSimilarity] = {}  # each run's similarity state, while it narrates

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
            request, state.prefix_digest = self.request_for(state.task, reanchor=state.reanchor)
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
                stored = self._remember(self.store.get(task.key))
                report.frames += stored.frames
                self._add_to_run(run, cursors[id(run)], stored)
                cursors[id(run)] += 1

        self._runs = {}
        if self.options.quality is not None:
            self._prepare_quality(self.options.quality)
        def accept(key: str, result: RowResult, audio: SegmentAudio) -> None:
            state = attempts[key]
            first = waiting[key][0]  # a key wanted by several runs is judged in the first one's
            stored = self._accept(state, result, audio, report_for(first), self._run_state(first), cursors[id(first)])
            if stored is None:
                submit(state)  # again, with the next attempt's seed
                return
            del attempts[key]
            for run in waiting.pop(key):
                report = report_for(run)
                report.generated += 1
                report.flagged += bool(stored.facts["flags"] or stored.facts.get("quality_flags"))
                self._add_to_run(run, cursors[id(run)], stored)
                report.frames += stored.frames
                report.generated_frames += stored.frames
                report.generated_seconds += stored.frames / self.codec.frame_rate
                cursors[id(run)] += 1
                advance(run)
            if state.task.previous_key is not None:  # carried already: the store has it if wanted again
                self._recent.pop(state.task.previous_key, None)

        # Segments are measured (decoded, embedded) on a worker thread while the engine keeps stepping;
        # the few in the WER sample are then transcribed on a second one, so that a slow transcription
        # holds up only its own run.
        checker = SegmentChecker(self._measure_finished, getattr(self.codec, "device", None),
                                 threaded=self.threaded_checks)
        transcriber = SegmentChecker(self._transcribe_finished, None, threaded=self.threaded_checks, max_batch=8)
        try:
            while queue or requests or checker.pending or transcriber.pending:
                while queue and engine.occupancy + engine.queued < engine.capacity:
                    advance(queue.popleft())
                if requests:
                    for finished in engine.step():
                        key = requests.pop(finished.request_id)
                        checker.submit((key, finished.result), (finished.result.frames, attempts[key].task))
                idle = not requests  # wait for measurements only when the engine has nothing to step
                for (key, result), audio in checker.collect(wait=idle):
                    if self._needs_transcript(attempts[key].task, audio):
                        transcriber.submit((key, result), (audio, attempts[key].task))
                    else:
                        accept(key, result, audio)
                for (key, result), audio in transcriber.collect(wait=idle and not checker.pending):
                    accept(key, result, audio)
        finally:
            checker.close()
            transcriber.close()

        spent = engine.stats
        model_seconds = (spent.prefill_seconds - before.prefill_seconds) + (spent.step_seconds - before.step_seconds)
        generated_frames = sum(r.generated_frames for r in reports.values()) or 1
        for report in reports.values():
            report.wall_seconds = time.perf_counter() - started
            report.model_seconds = model_seconds * report.generated_frames / generated_frames
            report.row_steps = spent.row_steps - before.row_steps
            report.useful_row_steps = spent.useful_row_steps - before.useful_row_steps
        self._recent.clear()
        self._runs = {}
        return [reports[c] for c in sorted(reports)]

    @property
    def stats(self) -> EngineStats:
        return self.engine.stats

    def progress(self) -> dict:
        """Figures for a progress display, safe to read while `narrate` runs in another thread."""
        engine, stats = self._engine, self._engine.stats if self._engine else EngineStats()
        return {"rows": engine.occupancy if engine else 0, "generated_frames": self.generated_frames,
                "generated_seconds": self.generated_frames / self.codec.frame_rate,
                "row_steps": stats.row_steps, "useful_row_steps": stats.useful_row_steps}

    def _accept(self, state: _Attempt, result: RowResult, audio: SegmentAudio, report: ChapterReport,
                run: RunSimilarity | None = None, index: int = 0) -> StoredSegment | None:
        """Store a segment that passes its checks, or has no attempts left (flagged); None: try again.
        ``run``, ``index``: the similarity state of the segment's run and its place in the run."""
        report.attempts += 1
        checks = self.check(state.task, result, audio.level_dbfs)
        state.attempt += 1
        quality, decision = self._judge(state, audio, run, index)
        regenerate = bool(checks) or (decision is not None and decision.action == REGENERATE)
        if regenerate and state.attempt < self.options.max_attempts:
            if decision is not None and decision.reanchor and state.task.previous_key is not None:
                state.reanchor = True  # the prefix carries the drift on: the retries go without it
            return None
        facts = {
            "chapter_index": state.task.chapter_index,
            "segment_index": state.task.segment_index,
            "text": state.task.model_text,
            "seed": state.seed,
            "attempts": state.attempt,
            "flags": checks,
            "est_frames": state.task.est_frames,
            "prefix_key": state.task.previous_key if state.prefix_digest else None,
            "prefix_digest": state.prefix_digest,
        }
        if quality is not None:
            flags = list(decision.flags) if decision is not None and decision.action != OK else []
            facts.update(quality, quality_flags=flags, reanchored=state.reanchor,
                         quality_attempts=state.quality_log)
        segment = StoredSegment(key=state.task.key, codes=result.frames.numpy().astype(np.int16), facts=facts,
                                audio=audio.samples, sample_rate=audio.sample_rate, flac=audio.flac)
        self.store.put(segment)
        self.generated_frames += segment.frames
        return self._remember(segment)

    # --- quality -------------------------------------------------------------------------

    def _prepare_quality(self, options: QualityOptions) -> None:
        """The measurer (loaded once) and the voice reference's embedding (once per voice)."""
        if self._measurer is None or self._measurer.options != options:
            device = getattr(self.codec, "device", None)
            self._measurer = QualityMeasurer(options, str(device) if device is not None else "cpu")
        codes, given = self.voice.codes, self.reference_audio
        if given is not None:
            digest = "audio:" + hashlib.sha256(np.ascontiguousarray(given[0], dtype=np.float32).tobytes()).hexdigest()
        else:
            digest = None if codes is None else codes_digest(codes)
        if self._reference is None or self._reference[0] != digest:
            embedding = None
            if given is not None:
                embedding = self._measurer.reference_embedding(given[0], int(given[1]))
            elif codes is not None and self._measurer.encoder is not None:
                audio = decode_segments(self.codec, [torch.from_numpy(codes.astype(np.int64))])[0]
                embedding = self._measurer.reference_embedding(audio, self.codec.sample_rate)
            self._reference = (digest, embedding)

    def _run_state(self, run: RunTask) -> RunSimilarity | None:
        """The similarity state of ``run`` (None when similarity is not measured)."""
        quality = self.options.quality
        if quality is None or not quality.similarity:
            return None
        key = (run.chapter_index, run.run_index)
        if key not in self._runs:
            self._runs[key] = RunSimilarity(None if self._reference is None else self._reference[1])
        return self._runs[key]

    def _add_to_run(self, run: RunTask, index: int, segment: StoredSegment) -> None:
        """Segment ``index`` of ``run`` is accepted: it joins the run's similarity state. A segment
        stored with quality off has no embedding in its facts; it is embedded from its audio now."""
        state = self._run_state(run)
        if state is None:
            return
        embedding = embedding_from_facts(segment.facts)
        if embedding is None:
            audio = segment.audio
            if audio is None:
                audio = decode_segments(self.codec, [torch.from_numpy(segment.codes.astype(np.int64))])[0]
            rate = segment.sample_rate or self.codec.sample_rate
            assert self._measurer is not None  # similarity on: narrate() prepared the measurer
            embedding = self._measurer.measure([audio], rate, [""], [""])[0].embedding
        assert embedding is not None  # similarity on: the measurer embeds every segment
        state.accept(index, embedding)

    def _judge(self, state: _Attempt, audio: SegmentAudio, run: RunSimilarity | None,
               index: int) -> tuple[dict | None, Decision | None]:
        """This attempt's quality facts and decision (None, None with quality off; decision None
        when the options only measure)."""
        options = self.options.quality
        measured = audio.quality
        if options is None or measured is None:
            return None, None
        values = measured.with_run(run, index)
        decision = decide(values, Distribution(*run.spreads()) if run is not None else None, options,
                          attempt=state.attempt)
        state.quality_log.append({"seed": state.seed, "action": decision.action if options.act else "measured",
                                  "flags": list(decision.flags), "reasons": list(decision.reasons),
                                  "reanchored": state.reanchor})
        facts = {
            "similarity_to_reference": values.similarity_to_reference,
            "similarity_to_run": values.similarity_to_run,
            "wer": values.wer,
            "transcript": values.transcript,
            "speaker_embedding": embedding_to_facts(measured.embedding),
        }
        return facts, decision if options.act else None

    def _remember(self, segment: StoredSegment) -> StoredSegment:
        self._recent[segment.key] = segment
        return segment

    def _previous(self, key: str) -> StoredSegment:
        return self._recent.get(key) or self._remember(self.store.get(key))

    def request_for(self, task: SegmentTask, reanchor: bool = False) -> tuple[SpeechRequest, str | None]:
        """The prompt of a segment, and a digest of the prefix codes it carries (None: no prefix).
        ``reanchor``: without the previous segment as its prefix (the voice reference only)."""
        voice = self.voice
        reference = [torch.from_numpy(voice.codes.astype(np.int64))] if voice.codes is not None else None
        prefix_codes, prefix_text = None, None
        if task.previous_key is not None:
            previous = None if reanchor else self._previous(task.previous_key)
            if previous is not None and 0 < previous.frames <= self.options.carryover_bound_frames:
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

    def _measure_finished(self, finished: list[tuple[torch.Tensor, SegmentTask]]) -> list[SegmentAudio]:
        """On the checker's thread: finished segments' audio and, with quality on, their own measures
        (one embedding batch, one ASR batch per language, the WER sample chosen by key)."""
        audios = self.measure_segments([frames for frames, _ in finished])
        if self.options.quality is None or self._measurer is None:
            return audios
        usable = [(i, audio.samples, audio.sample_rate) for i, audio in enumerate(audios)
                  if audio.samples is not None and audio.sample_rate is not None]
        if not usable:
            return audios
        tasks = [finished[i][1] for i, _, _ in usable]
        measured = self._measurer.measure([samples for _, samples, _ in usable], usable[0][2],
                                          [t.model_text for t in tasks], [t.language for t in tasks],
                                          keys=[t.key for t in tasks], transcribe=False)
        for (i, _, _), values in zip(usable, measured):
            audios[i] = replace(audios[i], quality=values)
        return audios

    def _needs_transcript(self, task: SegmentTask, audio: SegmentAudio) -> bool:
        return (audio.quality is not None and self._measurer is not None
                and self._measurer.wants_transcript(task.model_text, task.key))

    def _transcribe_finished(self, items: list[tuple[SegmentAudio, SegmentTask]]) -> list[SegmentAudio]:
        """On the transcriber's thread: the WER sample's transcripts, one ASR batch per language."""
        audios = [audio for audio, _ in items]
        # only segments measured with quality on come here (see _needs_transcript): all decoded, all measured
        assert self._measurer is not None and audios[0].sample_rate is not None
        measured = self._measurer.with_transcripts([_present(a.quality) for a in audios],
                                                   [_present(a.samples) for a in audios],
                                                   audios[0].sample_rate, [t.model_text for _, t in items],
                                                   [t.language for _, t in items])
        return [replace(audio, quality=values) for audio, values in zip(audios, measured)]

    def measure_segments(self, frames: list[torch.Tensor]) -> list[SegmentAudio]:
        """Finished segments' codes -> their audio (each decoded alone, see pipeline.narration.segment_audio), its
        level, and the FLAC bytes the store keeps (encoded here, off the engine's loop)."""
        rate = self.codec.sample_rate
        return [SegmentAudio(level_dbfs(audio), audio, rate, flac=audio_to_flac(audio, rate))
                for audio in decode_segments(self.codec, frames)]


@dataclass(frozen=True)
class SegmentAudio:
    """A finished segment's decoded audio (None where nothing was decoded) and its RMS level in dBFS."""

    level_dbfs: float
    samples: np.ndarray | None = None
    sample_rate: int | None = None
    quality: Measured | None = None  # its own quality measures (with NarrationOptions.quality)
    flac: bytes | None = None  # `samples` as the store keeps them (pipeline.narration.segment_audio.audio_to_flac)


_T = TypeVar("_T")


def _present(value: _T | None) -> _T:
    """``value``, which the caller knows was set (a segment's audio or measures, where only such come)."""
    if value is None:
        raise ValueError("a segment's audio or measures are missing")
    return value


def codes_digest(codes: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(codes, dtype=np.int16).tobytes()).hexdigest()[:16]


def embedding_to_facts(embedding: np.ndarray | None) -> str | None:
    """A speaker embedding as stored in a segment's facts: base64 of its float32 bytes (exact)."""
    if embedding is None:
        return None
    return base64.b64encode(np.ascontiguousarray(embedding, dtype="<f4").tobytes()).decode("ascii")


def embedding_from_facts(facts: dict) -> np.ndarray | None:
    text = facts.get("speaker_embedding")
    return None if not text else np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)
