"""The Ray adapter: narrator actors, finishing tasks, progress. The only module that imports Ray.

Narrator actors load the model and codec once and take chapters a few at a time, longest
first, from a queue the driver holds; finishing runs as one CPU task per chapter. Only codes
(in the segment store) and small records cross process boundaries: the driver never holds audio.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import ray
from tqdm import tqdm

from pipeline.chapter_audio import ChapterSegment, finish_chapter_from_store
from pipeline.errors import InputError
from pipeline.index import write_index
from pipeline.narrate import FRAMES_PER_SECOND, ChapterReport, ChapterTask, Narrator
from pipeline.store import SegmentStore
from pipeline.voice import Voice, encode_voice

if TYPE_CHECKING:
    from jobs.narrate import ClusterOptions, RunSetup
    from pipeline.plan import Plan

POLL_SECONDS = 1.0


@contextlib.contextmanager
def connect(cluster: ClusterOptions):
    """Join the configured cluster, or start an embedded one; shut down only what we started."""
    if ray.is_initialized():
        yield
        return
    project = str(Path(__file__).resolve().parents[1])
    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (project, os.environ.get("PYTHONPATH")) if p)}}
    if cluster.address:
        ray.init(address=cluster.address, runtime_env=runtime_env, log_to_driver=True)
    else:
        ray.init(num_cpus=cluster.num_cpus, include_dashboard=cluster.dashboard, runtime_env=runtime_env,
                 log_to_driver=True)
    try:
        yield
    finally:
        ray.shutdown()


def load_models(checkpoint: str, codec_name: str | None, device: str):
    import torch

    from moss_model.codec import load_codec
    from moss_model.loading import load_tts

    dtype = torch.bfloat16 if device == "cuda" else None
    tts = load_tts(checkpoint, dtype=dtype, device=device)
    codec = load_codec(codec_name or tts.codec_name, device=device)
    return tts, codec


class NarratorActor:
    """One model + codec on one device; narrates the chapters it is handed."""

    def __init__(self, setup: RunSetup, store_root: str, voice: Voice | None) -> None:
        import torch

        self.device = "cuda" if torch.cuda.is_available() and setup.cluster.gpus_per_actor > 0 else "cpu"
        if self.device == "cpu":
            torch.set_num_threads(max(1, int(setup.cluster.cpus_per_actor)))
        self.tts, self.codec = load_models(setup.model.checkpoint, setup.model.codec, self.device)
        if voice is None:
            voice = encode_voice(setup.voice, self.codec, self.tts.config.n_vq)
        self.narrator = Narrator(self.tts, self.codec, voice, setup.narration, SegmentStore(store_root))

    def narrate(self, chapters: list[ChapterTask]) -> list[ChapterReport]:
        return self.narrator.narrate(chapters)


def narrate_chapters(chapters: list[ChapterTask], setup: RunSetup, store: SegmentStore, total: int) -> list[ChapterReport]:
    """All chapters through the actors (longest first), with a progress bar fed from the store."""
    stored = store.keys()
    reports: list[ChapterReport] = []
    voice = None
    if setup.voice.path is None:
        voice, bootstrap_reports = _bootstrap_voice(chapters, setup, store)
        reports.extend(bootstrap_reports)
        stored = store.keys()
    queue = sorted((c for c in chapters if any(s.key not in stored for s in c.segments)),
                   key=lambda c: c.est_frames, reverse=True)
    # A dead actor is restarted and its call retried: it rebuilds its state from the store.
    options = {"num_cpus": setup.cluster.cpus_per_actor, "num_gpus": setup.cluster.gpus_per_actor,
               "max_restarts": 2, "max_task_retries": 2}
    actor_class = ray.remote(**options)(NarratorActor)
    actors = [actor_class.remote(setup, store.root, voice) for _ in range(min(setup.cluster.num_actors, len(queue)))]
    in_flight: dict = {}
    est_frames = {s.key: s.est_frames for c in chapters for s in c.segments}
    progress = tqdm(total=total, unit="seg", desc="narrating", dynamic_ncols=True)
    try:
        for actor in actors:
            _hand_out(actor, queue, in_flight, setup.cluster.chapters_per_actor)
        while in_flight:
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_SECONDS)
            for ref in done:
                actor = in_flight.pop(ref)
                reports.extend(ray.get(ref))
                _hand_out(actor, queue, in_flight, setup.cluster.chapters_per_actor)
            _update(progress, store, est_frames)
        _update(progress, store, est_frames)
    finally:
        progress.close()
        for actor in actors:
            ray.kill(actor)  # frees their GPUs and CPUs for finishing
    return reports


def _hand_out(actor, queue: list[ChapterTask], in_flight: dict, count: int) -> None:
    if queue:
        batch, queue[:] = queue[:count], queue[count:]
        in_flight[actor.narrate.remote(batch)] = actor


def _update(progress: tqdm, store: SegmentStore, est_frames: dict[str, int]) -> None:
    """Progress from the store itself: segments done, and about how much audio they hold."""
    stored = store.keys() & est_frames.keys()
    minutes = sum(est_frames[k] for k in stored) / FRAMES_PER_SECOND / 60
    progress.set_postfix_str(f"audio≈{minutes:.1f} min", refresh=False)
    progress.update(len(stored) - progress.n)


def _bootstrap_voice(chapters: list[ChapterTask], setup: RunSetup, store: SegmentStore
                     ) -> tuple[Voice, list[ChapterReport]]:
    """No reference given: narrate the book's first segment without one; its voice is the reference."""
    first_chapter = min(chapters, key=lambda c: c.chapter_index)
    first = first_chapter.segments[0]
    reports = []
    if not store.has(first.key):
        actor = ray.remote(num_cpus=setup.cluster.cpus_per_actor, num_gpus=setup.cluster.gpus_per_actor)(NarratorActor)
        bootstrap = actor.remote(setup, store.root, Voice(setup.voice.voice_id, None, None))
        try:
            task = ChapterTask(first_chapter.chapter_index, first_chapter.title, (first,))
            reports = ray.get(bootstrap.narrate.remote([task]))
        finally:
            ray.kill(bootstrap)
    segment = store.get(first.key)
    return Voice(f"{setup.voice.voice_id}:{first.key}", segment.codes, first.model_text), reports


def _finish_task(setup: RunSetup, store_root: str, chapter_index: int, title: str, segments: list[ChapterSegment],
                 book_title: str, author: str | None, stem: str):
    from moss_model.codec import load_codec
    from moss_model.loading import codec_name

    codec = _CODECS.get(setup.model.codec)
    if codec is None:
        name = setup.model.codec or codec_name(Path(_resolve(setup.model.checkpoint)))
        codec = _CODECS.setdefault(setup.model.codec, load_codec(name))
    return finish_chapter_from_store(SegmentStore(store_root), codec, chapter_index, title, segments,
                                     setup.output / "chapters", setup.finish, book_title, author, stem)


_CODECS: dict = {}  # one codec per finishing worker process


def _resolve(checkpoint: str) -> str:
    from moss_model.checkpoint import resolve_checkpoint

    return str(resolve_checkpoint(checkpoint))


def finish_book(plan: Plan, setup: RunSetup, store: SegmentStore) -> dict:
    """Decode and finish every chapter in parallel CPU tasks; then the M4B and the index."""
    from pipeline.export import Cover
    from pipeline.finish import finish_book as write_m4b
    from pipeline.naming import chapter_stem

    stored = store.keys()
    missing = [s for s in plan.segments if s.key not in stored]
    if missing:
        first = missing[0]
        raise InputError(store.root, f"chapter {first.chapter_index + 1}, segment {first.segment_index + 1}",
                         f"{len(missing)} segment(s) are not narrated yet",
                         "run job=narrate first, with the same input, voice, model and decoding")
    chapters: dict[int, list] = {}
    for segment in plan.segments:
        chapters.setdefault(segment.chapter_index, []).append(segment)
    task = ray.remote(num_cpus=setup.cluster.finish_cpus)(_finish_task)
    refs = []
    for index, segments in sorted(chapters.items()):
        items = [ChapterSegment(s.key, s.text, s.boundary, s.pause_s) for s in segments]
        title = segments[0].chapter_title
        refs.append(task.remote(setup, store.root, index, title, items, plan.book.title, plan.book.author,
                                chapter_stem(index, title)))
    finished = []
    with tqdm(total=len(refs), unit="chapter", desc="finishing", dynamic_ncols=True) as progress:
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            progress.update(len(done))
        finished = ray.get(refs)
    cover = plan.book.cover and Cover(plan.book.cover.data, plan.book.cover.mime)
    m4b = write_m4b(finished, setup.output / f"{chapter_stem(None, plan.book.title)}.m4b", plan.book.title,
                    plan.book.author, cover, setup.finish)
    segment_rows, flagged = _segment_rows(plan, store, finished, setup)
    chapter_rows = [c.chapter_row() for c in finished]
    audio_seconds = sum(c.duration_s for c in finished)
    book_row = {
        "title": plan.book.title,
        "author": plan.book.author,
        "source": plan.book.source,
        "chapters": len(finished),
        "segments": len(plan.segments),
        "flagged": flagged,
        "duration_s": audio_seconds,
        "m4b_path": None if m4b is None else str(m4b),
        "model_id": setup.model.checkpoint,
        "model_revision": setup.model_revision,
        "tiny_random_model": setup.model.tiny,
        "voice_id": setup.voice.voice_id,
        "decoding": _decoding_dict(setup),
    }
    index = write_index(setup.output, segment_rows, chapter_rows, book_row)
    return {"audio_seconds": audio_seconds, "flagged": flagged, "index": str(index), "m4b": None if m4b is None else str(m4b)}


def _decoding_dict(setup: RunSetup) -> dict:
    from dataclasses import asdict

    return asdict(setup.narration.decoding)


def _segment_rows(plan: Plan, store: SegmentStore, finished: list, setup: RunSetup) -> tuple[list[dict], int]:
    import json

    timing = {(row["chapter_index"], row["segment_index"]): row for c in finished for row in c.segments}
    rows, flagged = [], 0
    decoding = json.dumps(_decoding_dict(setup), sort_keys=True)
    positions: dict[int, int] = {}
    for segment in plan.segments:
        position = positions.get(segment.chapter_index, 0)
        positions[segment.chapter_index] = position + 1
        stored = store.get(segment.key)
        facts = stored.facts
        times = timing[(segment.chapter_index, position)]
        flagged += bool(facts.get("flags"))
        rows.append({
            "book": plan.book.title,
            "chapter_index": segment.chapter_index,
            "chapter_title": segment.chapter_title,
            "segment_index": segment.segment_index,
            "text": segment.text,
            "model_text": segment.model_text,
            "boundary": segment.boundary,
            "key": segment.key,
            "seed": int(facts["seed"]),
            "attempts": int(facts["attempts"]),
            "flags": list(facts.get("flags", [])),
            "frames": stored.frames,
            "est_frames": segment.est_frames,
            "start_sample": times["start_sample"],
            "end_sample": times["end_sample"],
            "start_s": times["start_s"],
            "end_s": times["end_s"],
            "chapter_file": next(c.flac_path for c in finished if c.chapter_index == segment.chapter_index),
            "prefix_key": facts.get("prefix_key"),
            "model_id": setup.model.checkpoint,
            "model_revision": setup.model_revision,
            "decoding": decoding,
        })
    return rows, flagged
