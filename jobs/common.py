"""The steps the book jobs (narrate, finish) share: check the inputs, decide the setup, make the
plan, cut it into runs and chapters, and write the M4B and the index from finished chapters.

Not a job: the job modules call these in order, and the Ray adapter schedules what they return.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from jobs.config import (ClusterOptions, book_key_inputs, cluster_options, finish_options, generated_voice_id,
                         narration_options, plan_options, quality_options, report_enabled, voice_spec)
from jobs.output import (OutputPlace, claim_remote, fetch_inputs, fresh_staging, output_place, publish,
                         remote_problems, unpublish)
from jobs.settings import ConfigError, check_files, claim_output, forbidden_folder, output_problems
from pipeline import index, storage
from pipeline.errors import InputError
from pipeline.finishing.chapter_audio import ChapterSegment
from pipeline.finishing.finish import BookInfo, FinishedChapter, FinishOptions
from pipeline.finishing.naming import chapter_stem
from pipeline.narration.models import ModelChoice, language_tags_setting, resolve_model
from pipeline.narration.narrate import NarrationOptions, RunTask, SegmentTask
from pipeline.narration.store import SegmentStore
from pipeline.narration.voice import VoiceSpec
from pipeline.quality.report import write_book_report
from pipeline.reading import Book, read_book
from pipeline.text.lexicon import Lexicon
from pipeline.text.plan import PLAN_FILE, Plan, PlanOptions, build_plan, write_plan


@dataclass(frozen=True)
class CheckedInputs:
    """The manuscript, voice, lexicon and output folder, checked before any model is resolved."""

    output: Path  # not created yet (for an object-storage output: its staging folder)
    store: str  # the segment store: a folder or a URL
    remote: str | None  # the output's URL when it is on object storage (see jobs/output.py)
    source: Path
    voice: VoiceSpec
    book: Book
    lexicon: Lexicon
    options: PlanOptions


@dataclass(frozen=True)
class RunSetup:
    """Everything decided before a model loads."""

    output: Path
    model: ModelChoice
    model_revision: str
    voice: VoiceSpec
    narration: NarrationOptions
    finish: FinishOptions
    cluster: ClusterOptions
    store: str  # the segment store, a folder or a URL (shared by the jobs of a sweep: see jobs/config.py)
    remote: str | None = None  # the output's URL on object storage; `output` is then its staging folder
    report: bool = True  # finishing ends with the quality report (report.html and its plots)

    @property
    def place(self) -> OutputPlace:
        return OutputPlace(self.output, self.remote, self.store)


@dataclass(frozen=True)
class ChapterWork:
    """One chapter to finish: its planned segments in order, and the file stem it is written under."""

    chapter_index: int
    title: str
    segments: tuple[ChapterSegment, ...]
    stem: str


def check_local_capacity(cluster: ClusterOptions, gpus: int) -> None:
    """The embedded cluster is this machine: refuse, before anything starts, actors it cannot hold."""
    import os

    cpus = cluster.num_cpus or os.cpu_count() or 1
    by_cpu = cpus // cluster.cpus_per_actor if cluster.cpus_per_actor > 0 else cluster.num_actors
    by_gpu = gpus // cluster.gpus_per_actor if cluster.gpus_per_actor > 0 else cluster.num_actors
    fits = int(min(by_cpu, by_gpu))
    if fits < cluster.num_actors:
        raise InputError(
            "cluster=local", "",
            f"this machine cannot hold {cluster.num_actors} narrator actor(s) of {cluster.gpus_per_actor:g} GPU(s) and "
            f"{cluster.cpus_per_actor:g} CPU(s) each: it has {gpus} GPU(s) and {cpus} CPU(s), room for {fits}",
            f"set cluster.num_actors={max(fits, 1)}" + (" and cluster.gpus_per_actor=0 (CPU)" if fits < 1 and gpus == 0
                                                        else "") + ", or join a larger cluster with cluster=ray")


def check_inputs(cfg: DictConfig) -> CheckedInputs:
    """Every input a book job reads, checked in order (files and output, voice, manuscript, lexicon);
    nothing is written but the local copies of inputs given as URLs, and no model is resolved."""
    place = output_place(cfg)
    cfg, urls = fetch_inputs(cfg)
    source = Path(str(cfg.input)).expanduser()
    problems = check_files(cfg)
    if place.remote:
        problems += remote_problems(place.remote, source if source.is_file() else None, bool(cfg.get("overwrite", False)))
    elif not any(key == "output" for key, _, _ in problems):
        problems += output_problems(place.local, source if source.is_file() else None, bool(cfg.get("overwrite", False)))
    forbidden = None if storage.is_remote(place.store) else forbidden_folder(Path(place.store))
    if forbidden and cfg.get("store"):
        problems.append(("store", cfg.store, f"is {forbidden}; the tool never writes there: pass store=DIR to a folder "
                         "of its own (or leave it null for <output>/store)"))
    if problems:
        raise ConfigError(problems)
    voice = voice_spec(cfg)
    if "voice" in urls:
        voice = replace(voice, path=urls["voice"])  # each narrator actor fetches it on its own node
    options = plan_options(cfg)
    book = read_book(source, options.read)
    lexicon = Lexicon.load(cfg.lexicon, polyphones=options.polyphones)
    return CheckedInputs(place.local, place.store, place.remote, source, voice, book, lexicon, options)


def prepare(cfg: DictConfig, inputs: CheckedInputs | None = None) -> RunSetup:
    """Check every input, then decide the model; the output folder is created and marked last."""
    import torch

    from moss_model.checkpoint import CheckpointError, resolve_checkpoint
    from moss_model.loading import checkpoint_fingerprint

    inputs = inputs or check_inputs(cfg)
    cuda = torch.cuda.is_available()
    narration = narration_options(cfg, tiny=False)  # typed before the model: its checks need no model
    finish = finish_options(cfg)
    cluster = cluster_options(cfg, cuda)
    if cluster.address is None:
        check_local_capacity(cluster, torch.cuda.device_count() if cuda else 0)
    model = resolve_model(str(cfg.model), cuda)
    try:
        revision = checkpoint_fingerprint(resolve_checkpoint(model.checkpoint))
    except CheckpointError as error:
        raise InputError(f"model={cfg.model}", "", str(error), "pass a local checkpoint folder or model=tiny") from error
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    fresh_staging(OutputPlace(inputs.output, inputs.remote, inputs.store))
    output = claim_output(inputs.output, inputs.source, str(cfg.job.name), config_yaml)
    if inputs.remote:
        claim_remote(inputs.remote, inputs.source, str(cfg.job.name), config_yaml)
    return RunSetup(
        output=output,
        model=model,
        model_revision=revision,
        voice=inputs.voice,
        narration=replace(narration, check_durations=narration.check_durations and not model.tiny,
                          language_tags=language_tags_setting(cfg.narration.language_tags, model.name, model.checkpoint),
                          quality=quality_options(cfg, tiny=model.tiny)),  # decided by the model, not by its name
        finish=finish,
        cluster=cluster,
        store=inputs.store,
        remote=inputs.remote,
        report=report_enabled(cfg),
    )


def same_run(a, b) -> bool:
    return (a.chapter_index, a.run_index) == (b.chapter_index, b.run_index)


def make_plan(cfg: DictConfig, setup: RunSetup, inputs: CheckedInputs | None = None) -> Plan:
    """The book's plan, keyed by the real voice and model, written to <output>/plan.parquet."""
    inputs = inputs or check_inputs(cfg)
    keys = book_key_inputs(cfg, setup.voice.voice_id, setup.model.checkpoint, setup.model_revision, setup.narration)
    plan = build_plan(inputs.book, inputs.options, inputs.lexicon, keys)
    if setup.voice.path is None and plan.segments:
        # Every segment after the first speaks in the first one's voice: key them by it.
        first = plan.segments[0]
        carried = replace(keys, voice_id=generated_voice_id(first.key))
        rekeyed = [first]
        for segment in plan.segments[1:]:
            prev = rekeyed[-1] if same_run(rekeyed[-1], segment) else None
            rekeyed.append(replace(segment, key=carried.key(segment.model_text, prev.model_text if prev else None,
                                                            segment.language)))
        plan.segments[:] = rekeyed
    save_plan(plan, setup.output / PLAN_FILE)
    return plan


def save_plan(plan: Plan, path: Path) -> Path:
    """The plan written whole or not at all (a temporary file beside it, then renamed)."""
    return index.write_atomically(Path(path), lambda temporary: write_plan(plan, temporary))


def unmark_complete(setup: RunSetup) -> None:
    """Remove the index's completion marker (here and where the output is published) before
    finishing writes anything: a finishing run that dies midway must not leave an old book table
    beside new audio."""
    index.table_path(setup.output, "book").unlink(missing_ok=True)
    unpublish(setup.place)


def run_tasks(plan: Plan) -> list[RunTask]:
    """The plan's runs, each a chain of continuations from its first segment."""
    runs: dict[tuple[int, int], list] = {}
    for segment in plan.segments:
        runs.setdefault((segment.chapter_index, segment.run_index), []).append(segment)
    tasks = []
    for (chapter_index, run_index), segments in runs.items():
        items = []
        for position, s in enumerate(segments):
            previous = segments[position - 1] if position else None
            items.append(SegmentTask(
                key=s.key, chapter_index=chapter_index, segment_index=s.segment_index, model_text=s.model_text,
                est_frames=s.est_frames, language=s.language,
                previous_key=previous.key if previous else None,
                previous_text=previous.model_text if previous else None,
            ))
        tasks.append(RunTask(chapter_index, run_index, segments[0].chapter_title, tuple(items)))
    return tasks


# --- finishing ---------------------------------------------------------------------------


def check_narrated(plan: Plan, store: SegmentStore) -> None:
    """Every planned segment is in the store; else an InputError naming the first one missing."""
    stored = store.keys()
    missing = [s for s in plan.segments if s.key not in stored]
    if missing:
        first = missing[0]
        raise InputError(store.root, f"chapter {first.chapter_index + 1}, segment {first.segment_index + 1}",
                         f"{len(missing)} segment(s) are not narrated yet",
                         "run job=narrate first, with the same input, voice, model and decoding")


def chapter_work(plan: Plan) -> list[ChapterWork]:
    """The plan's chapters in order, each with what finishing needs of its segments."""
    chapters: dict[int, list] = {}
    for segment in plan.segments:
        chapters.setdefault(segment.chapter_index, []).append(segment)
    return [ChapterWork(chapter_index, segments[0].chapter_title,
                        tuple(ChapterSegment(s.key, s.text, s.boundary, s.pause_s) for s in segments),
                        chapter_stem(chapter_index, segments[0].chapter_title))
            for chapter_index, segments in sorted(chapters.items())]


def book_info(plan: Plan) -> BookInfo:
    """What the tags of every file say about the book."""
    from pipeline.finishing.export import Cover

    language = index.book_language(plan.book.language, [s.language for s in plan.segments])
    cover = plan.book.cover and Cover(plan.book.cover.data, plan.book.cover.mime)
    chapters = len({s.chapter_index for s in plan.segments})
    return BookInfo(title=plan.book.title, author=plan.book.author, language=language, cover=cover,
                    chapter_count=chapters)


def write_book(plan: Plan, setup: RunSetup, store: SegmentStore, book: BookInfo,
               finished: list[FinishedChapter]) -> dict:
    """The M4B (joined from the finished chapters) and the index, the book table last."""
    from pipeline.finishing.finish import finish_book as write_m4b

    m4b = write_m4b(finished, setup.output / f"{chapter_stem(None, plan.book.title)}.m4b", plan.book.title,
                    plan.book.author, book.cover, setup.finish, language=book.language)

    def facts(key: str):
        segment = store.get(key)
        return segment.facts, segment.frames

    segment_rows, flagged = index.segment_rows(plan.segments, facts, finished, setup.output, plan.book.title)
    book_row = index.book_row(
        plan.book, language=book.language, chapters=finished, segments=len(plan.segments), flagged=flagged,
        m4b=m4b, output=setup.output, loudness_target_lufs=setup.finish.target,
        true_peak_ceiling_dbtp=setup.finish.true_peak_db, model_id=setup.model.checkpoint,
        model_revision=setup.model_revision, tiny_random_model=setup.model.tiny, voice_id=setup.voice.voice_id,
        decoding=setup.narration.decoding)
    info = index.IndexInfo(model_id=setup.model.checkpoint, model_revision=setup.model_revision,
                           sample_rate_hz=setup.finish.sample_rate, loudness_target_lufs=setup.finish.target,
                           true_peak_ceiling_dbtp=setup.finish.true_peak_db)
    folder = index.write_index(setup.output, segment_rows, index.chapter_rows(finished, setup.output), book_row, info)
    if setup.report:
        write_book_report(setup.output, setup.narration.quality)
    publish(setup.place)  # an object-storage output: the staging folder copied there, the book table last
    return {"audio_seconds": book_row["duration_s"], "flagged": flagged, "index": published(setup, folder),
            "m4b": None if m4b is None else published(setup, m4b.path)}


def published(setup: RunSetup, path: str | Path) -> str:
    """Where a file of the output is for its reader: its URL when the output is on object storage."""
    if setup.remote is None:
        return str(path)
    return storage.join(setup.remote, Path(path).relative_to(setup.output).as_posix())
