"""Job "narrate": a manuscript and a voice in, a finished audiobook and its index out.

Orchestration only: check every input before a model loads, plan, fan the chapters out to
narrator actors on Ray (longest first), finish each chapter in a CPU task, write the M4B and
the index, print a summary. The work itself lives in pipeline/.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from jobs.plan import plan_options
from jobs.settings import (ConfigError, check_files, claim_output, forbidden_folder, output_problems,
                           voice_transcript)
from jobs.sweep import job_paths
from moss_model.sampling import DecodingParams, SamplingParams
from pipeline.errors import InputError
from pipeline.finish import FinishOptions
from pipeline.keys import KeyInputs
from pipeline.lexicon import Lexicon
from pipeline.models import ModelChoice, resolve_model
from pipeline.narrate import FRAMES_PER_SECOND, ChapterReport, NarrationOptions, RunTask, SegmentTask
from pipeline.plan import PLAN_FILE, Plan, PlanOptions, build_plan, write_plan
from pipeline.reading import Book, read_book
from pipeline.stitch import PauseOptions
from pipeline.store import SegmentStore
from pipeline.voice import GENERATED_VOICE, VoiceSpec, check_voice

STORE_DIR = "store"  # under the output folder


@dataclass(frozen=True)
class ClusterOptions:
    address: str | None
    num_actors: int
    gpus_per_actor: float
    cpus_per_actor: float
    finish_cpus: float
    num_cpus: int | None
    dashboard: bool
    placement_timeout_s: float = 60.0  # an actor the cluster cannot place within this fails the run


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
    store: Path  # the segment store (shared by the jobs of a sweep: see jobs/sweep.py)


def decoding_params(cfg: DictConfig) -> DecodingParams:
    d = cfg.decoding
    return DecodingParams(
        text=SamplingParams(float(d.text_temperature), float(d.text_top_p), int(d.text_top_k)),
        audio=SamplingParams(float(d.audio_temperature), float(d.audio_top_p), int(d.audio_top_k),
                             float(d.audio_repetition_penalty)),
    )


def narration_options(cfg: DictConfig, tiny: bool) -> NarrationOptions:
    n = cfg.narration
    return NarrationOptions(
        decoding=decoding_params(cfg),
        carryover_bound_frames=int(n.carryover_bound_frames),
        max_attempts=int(n.max_attempts),
        # random weights know nothing of the text: their durations cannot be checked against it
        check_durations=bool(n.check_durations) and not tiny,
        min_duration_ratio=float(n.min_duration_ratio),
        max_duration_ratio=float(n.max_duration_ratio),
        silence_dbfs=float(n.silence_dbfs),
        max_frames_per_segment=int(n.max_frames_per_segment),
        capacity=None if str(n.capacity) == "auto" else int(n.capacity),
    )


def finish_options(cfg: DictConfig) -> FinishOptions:
    f = cfg.finish
    p = f.pauses
    return FinishOptions(
        pauses=PauseOptions(clause_s=float(p.clause), sentence_s=float(p.sentence), paragraph_s=float(p.paragraph),
                            chapter_s=float(p.chapter), lead_in_s=float(p.lead_in)),
        loudness_preset=str(f.loudness_preset),
        target_lufs=None if f.target_lufs is None else float(f.target_lufs),
        true_peak_db=float(f.true_peak_db),
        lossy_format=None if f.lossy_format is None else str(f.lossy_format),
        lossy_bitrate=str(f.lossy_bitrate),
        subtitles=f.subtitles if f.subtitles is None or isinstance(f.subtitles, bool) else str(f.subtitles),
        write_m4b=bool(f.write_m4b),
    )


def cluster_options(cfg: DictConfig, cuda_available: bool) -> ClusterOptions:
    c = cfg.cluster
    gpus = c.gpus_per_actor
    if gpus == "auto":
        gpus = 1.0 if cuda_available else 0.0
    if int(c.num_actors) < 1:
        raise InputError("cluster.num_actors=", str(c.num_actors), "must be at least 1", "set cluster.num_actors=1 or more")
    return ClusterOptions(
        address=None if c.address is None else str(c.address),
        num_actors=int(c.num_actors),
        gpus_per_actor=float(gpus),
        cpus_per_actor=float(c.cpus_per_actor),
        finish_cpus=float(c.finish_cpus),
        num_cpus=None if c.num_cpus is None else int(c.num_cpus),
        dashboard=bool(c.dashboard),
        placement_timeout_s=float(c.get("placement_timeout_s", 60.0)),
    )


@dataclass(frozen=True)
class CheckedInputs:
    """The manuscript, voice, lexicon and output folder, checked before any model is resolved."""

    output: Path  # not created yet
    store: Path
    source: Path
    voice: VoiceSpec
    book: Book
    lexicon: Lexicon
    options: PlanOptions


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
    nothing is written and no model is resolved."""
    output, store = job_paths(cfg)
    source = Path(str(cfg.input)).expanduser()
    problems = check_files(cfg)
    if not any(key == "output" for key, _, _ in problems):
        problems += output_problems(output, source if source.is_file() else None, bool(cfg.get("overwrite", False)))
    forbidden = forbidden_folder(store)
    if forbidden and cfg.get("store"):
        problems.append(("store", cfg.store, f"is {forbidden}; the tool never writes there: pass store=DIR to a folder "
                         "of its own (or leave it null for <output>/store)"))
    if problems:
        raise ConfigError(problems)
    text, _origin = voice_transcript(cfg)
    voice = check_voice(cfg.voice, text)
    options = plan_options(cfg)
    book = read_book(source, options.read)
    lexicon = Lexicon.load(cfg.lexicon, polyphones=options.polyphones)
    return CheckedInputs(output.expanduser().absolute(), store.expanduser().absolute(), source, voice, book,
                         lexicon, options)


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
    output = claim_output(inputs.output, inputs.source, str(cfg.job.name), OmegaConf.to_yaml(cfg, resolve=True))
    return RunSetup(
        output=output,
        model=model,
        model_revision=revision,
        voice=inputs.voice,
        narration=replace(narration, check_durations=narration.check_durations and not model.tiny),
        finish=finish,
        cluster=cluster,
        store=inputs.store.resolve(),
    )


def make_plan(cfg: DictConfig, setup: RunSetup, inputs: CheckedInputs | None = None) -> Plan:
    inputs = inputs or check_inputs(cfg)
    options, book, lexicon = inputs.options, inputs.book, inputs.lexicon
    inputs = KeyInputs(
        voice_id=setup.voice.voice_id,
        model_id=setup.model.checkpoint,
        model_revision=setup.model_revision,
        decoding=asdict(setup.narration.decoding),
        seed_policy=str(cfg.narration.seed_policy),
        carryover_bound_frames=setup.narration.carryover_bound_frames,
    )
    plan = build_plan(book, options, lexicon, inputs)
    if setup.voice.path is None and plan.segments:
        # Every segment after the first speaks in the first one's voice: key them by it.
        first = plan.segments[0]
        carried = replace(inputs, voice_id=f"{GENERATED_VOICE}:{first.key}")
        rekeyed = [first]
        for segment in plan.segments[1:]:
            prev = rekeyed[-1] if same_run(rekeyed[-1], segment) else None
            rekeyed.append(replace(segment, key=carried.key(segment.model_text, prev.model_text if prev else None)))
        plan.segments[:] = rekeyed
    write_plan(plan, setup.output / PLAN_FILE)
    return plan


def unmark_complete(output: Path) -> None:
    """Remove the index's completion marker before finishing writes anything: a finishing run that
    dies midway must not leave an old book table beside new audio."""
    (output / "index" / "book" / "book.parquet").unlink(missing_ok=True)


def same_run(a, b) -> bool:
    return (a.chapter_index, a.run_index) == (b.chapter_index, b.run_index)


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


def run(cfg: DictConfig) -> dict:
    from jobs import ray_runtime

    started = time.perf_counter()
    inputs = check_inputs(cfg)
    setup = prepare(cfg, inputs)
    if setup.model.tiny:
        print(f"model: tiny random checkpoint ({setup.model.name}): the audio is noise")
    plan = make_plan(cfg, setup, inputs)
    summary = plan.summary()
    print(summary.format())
    store = SegmentStore(str(setup.store))
    runs = run_tasks(plan)
    with ray_runtime.connect(setup.cluster):
        ray_runtime.check_placement(setup.cluster)
        narration_started = time.perf_counter()
        reports = ray_runtime.narrate_runs(runs, setup, store, total=len(plan.segments))
        narration_seconds = time.perf_counter() - narration_started
        unmark_complete(setup.output)
        result = ray_runtime.finish_book(plan, setup, store)
    wall = time.perf_counter() - started
    totals = summarize(reports, plan, result, wall, setup, narration_seconds)
    print(format_summary(totals))
    return totals


def summarize(reports: list[ChapterReport], plan: Plan, result: dict, wall: float, setup: RunSetup,
              narration_seconds: float) -> dict:
    audio_seconds = result["audio_seconds"]
    model_seconds = sum(r.model_seconds for r in reports)
    gpus = max(setup.cluster.num_actors * max(setup.cluster.gpus_per_actor, 0.0), 0.0)
    generated = sum(r.generated for r in reports)
    calls = {r.call_id: r for r in reports}.values()  # the engine's figures, once per narrate() call
    row_steps = sum(r.row_steps for r in calls)
    return {
        "segments": len(plan.segments),
        "generated": generated,
        "reused": len(plan.segments) - generated,  # found in the store, finished by an earlier run
        "flagged": result["flagged"],
        "attempts": sum(r.attempts for r in reports),
        "audio_hours": audio_seconds / 3600,
        "wall_seconds": wall,
        "model_seconds": model_seconds,
        "useful_row_fraction": sum(r.useful_row_steps for r in calls) / row_steps if row_steps else None,
        "narration_seconds": narration_seconds,
        # audio generated by this run (reused segments excluded) per second of narration
        "narration_audio_seconds_per_second": (sum(r.generated_frames for r in reports) / FRAMES_PER_SECOND
                                               / narration_seconds if narration_seconds else 0.0),
        "real_time_factor": audio_seconds / wall if wall else 0.0,
        "real_time_factor_per_gpu": (audio_seconds / wall / gpus) if wall and gpus else None,
        "actors": setup.cluster.num_actors,
        "index": result["index"],
        "m4b": result["m4b"],
    }


def _percent(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{fraction:.0%}"


def format_summary(t: dict) -> str:
    per_gpu = f"{t['real_time_factor_per_gpu']:.2f}x" if t["real_time_factor_per_gpu"] else "n/a (no GPU)"
    return "\n".join([
        "narration finished",
        f"  segments:  {t['segments']} ({t['generated']} generated, {t['reused']} reused from the store, "
        f"{t['flagged']} flagged)",
        f"  audio:     {t['audio_hours'] * 3600:.1f} s ({t['audio_hours']:.3f} h)",
        f"  narration: {t['narration_seconds']:.1f} s, {t['narration_audio_seconds_per_second']:.1f} audio-s/s; "
        f"{_percent(t['useful_row_fraction'])} of the engines' row-steps generated audio",
        f"  wall time: {t['wall_seconds']:.1f} s; real-time factor {t['real_time_factor']:.2f}x "
        f"with {t['actors']} actor(s), per GPU {per_gpu}",
        f"  index:     {t['index']}",
        f"  book:      {t['m4b'] or '(no M4B)'}",
    ])
