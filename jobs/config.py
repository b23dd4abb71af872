"""The one builder: the composed (and already checked) config turned into typed objects.

Every job reads its options through these functions and nothing below the job layer sees
OmegaConf. Also here: where a job writes (its output folder and the segment store, apart per
job in a multirun), the segment key inputs of each job, and the generated-voice rule (which
voice narrates when `voice=` is absent).

Paths in a multirun: a single run writes to ``output`` and keeps its segments in
``<output>/store``. In a Hydra multirun (``-m finish.loudness_preset=audiobook,podcast``) every
job gets a folder of its own under ``output``, named by the overrides that set it apart
(``<output>/finish.loudness_preset=podcast``), while the store stays ``<output>/store`` for all
of them: segments are keyed by everything that shapes their audio, so jobs that agree on a
segment share it and none overwrites another's files. ``store=DIR`` puts the store elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from pipeline.errors import InputError
from pipeline.finishing.stitch import PauseOptions
from pipeline.narration.models import language_tags_setting
from pipeline.narration.voice import GENERATED_VOICE, VoiceSpec
from pipeline.reading import ReadOptions
from pipeline.text.keys import KeyInputs
from pipeline.text.plan import PlanOptions
from pipeline.text.segment import SpeakingRates

if TYPE_CHECKING:  # torch-heavy: imported where used, so that job=plan starts without torch
    from moss_model.sampling import DecodingParams
    from pipeline.dataset.prepare import PrepareOptions
    from pipeline.dataset.synth import SynthOptions
    from pipeline.finishing.finish import FinishOptions
    from pipeline.narration.narrate import NarrationOptions
    from pipeline.quality.decisions import QualityOptions

STORE_DIR = "store"  # under the output folder, unless store= names another
SPEAKING_RATE_LANGUAGES = ("en", "zh", "ja", "ko", "de", "fr", "es")  # the fields of SpeakingRates
_UNSAFE = re.compile(r"[^\w.,=+\-]+")


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


# --- where a job writes ------------------------------------------------------------------


def _multirun_job_dir() -> str | None:
    """The folder name of this multirun job, or None outside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN:
        return None
    name = _UNSAFE.sub("_", str(hydra.job.override_dirname or "")).strip("._")
    return name[:200] or f"job{hydra.job.num}"


def job_paths(cfg: DictConfig) -> tuple[Path, Path]:
    """(output folder of this job, segment store folder)."""
    base = Path(str(cfg.output)).expanduser()
    store = cfg.get("store")
    store_path = Path(str(store)).expanduser() if store else base / STORE_DIR
    job_dir = _multirun_job_dir()
    if job_dir is None:
        return base, store_path
    if job_dir == STORE_DIR:
        job_dir = f"{job_dir}_"
    return base / job_dir, store_path


# --- planning ----------------------------------------------------------------------------


def speaking_rates(rates: DictConfig) -> SpeakingRates:
    """`plan.speaking_rate` (or any mapping of language -> characters per second); a language
    left out keeps the pipeline's default rate."""
    return SpeakingRates(**{code: float(rates[code]) for code in SPEAKING_RATE_LANGUAGES if code in rates})


def read_options(cfg: DictConfig) -> ReadOptions:
    plan = cfg.plan
    return ReadOptions(
        skip_kinds=tuple(str(kind).lower() for kind in plan.skip_front_matter),
        chapter_pattern=plan.chapter_pattern,
        encoding=plan.encoding,
        keep_page_numbers=bool(plan.get("keep_page_numbers", False)),
        keep_code=bool(plan.get("keep_code", False)),
        max_archive_bytes=int(float(plan.get("max_archive_mb", 512)) * 2**20),
        max_compression_ratio=float(plan.get("max_compression_ratio", 200)),
    )


def plan_options(cfg: DictConfig) -> PlanOptions:
    plan = cfg.plan
    return PlanOptions(
        target_seconds=float(plan.target_seconds),
        max_seconds=float(plan.max_seconds),
        max_run_seconds=float(plan.max_run_seconds),
        rates=speaking_rates(plan.speaking_rate),
        language=str(cfg.language),
        read=read_options(cfg),
        polyphones=str(plan.polyphones or ""),
    )


# --- segment keys ------------------------------------------------------------------------


def plan_key_inputs(cfg: DictConfig) -> KeyInputs:
    """job=plan: the key inputs as written under `narration` (no voice file hashed, no model resolved)."""
    narration = cfg.narration
    decoding = OmegaConf.to_container(narration.decoding, resolve=True)
    assert isinstance(decoding, dict)  # a mapping in the config (the schema checks its keys)
    return KeyInputs(
        voice_id=str(narration.voice_id),
        model_id=str(narration.model_id),
        model_revision=str(narration.model_revision),
        decoding=decoding,
        carryover_bound_frames=int(narration.carryover_bound_frames),
        language_tags=language_tags_setting(narration.language_tags, str(cfg.model)),  # by name: nothing resolved
    )


def book_key_inputs(cfg: DictConfig, voice_id: str, model_id: str, model_revision: str,
                    narration: NarrationOptions) -> KeyInputs:
    """job=narrate and job=finish: the real voice hash, checkpoint fingerprint and typed decoding."""
    return KeyInputs(
        voice_id=voice_id,
        model_id=model_id,
        model_revision=model_revision,
        decoding=asdict(narration.decoding),
        carryover_bound_frames=narration.carryover_bound_frames,
        language_tags=narration.language_tags,  # a prompt that names the language: so does the key
    )


def dataset_key_inputs(model_id: str, model_revision: str, decoding: dict) -> KeyInputs:
    """job=synthesize: rows carry nothing over; each row's voice is keyed by the preparer."""
    return KeyInputs("", model_id, model_revision, decoding, 0)


def voice_spec(cfg: DictConfig) -> VoiceSpec:
    """The book's voice: `voice=` (checked and hashed) with its transcript, or, without one, the
    generated voice (see `generated_voice_id`)."""
    from jobs.settings import voice_transcript
    from pipeline.narration.voice import check_voice

    text, _origin = voice_transcript(cfg)
    return check_voice(cfg.voice, text)


def generated_voice_id(first_key: str) -> str:
    """No `voice=`: the book's first segment is narrated without a reference, and every other
    segment speaks in its voice; they are keyed by this voice id (the first one keeps its own key)."""
    return f"{GENERATED_VOICE}:{first_key}"


# --- narration, finishing, cluster -------------------------------------------------------


def decoding_params(cfg: DictConfig) -> DecodingParams:
    from moss_model.sampling import DecodingParams, SamplingParams

    d = cfg.decoding
    return DecodingParams(
        text=SamplingParams(float(d.text_temperature), float(d.text_top_p), int(d.text_top_k)),
        audio=SamplingParams(float(d.audio_temperature), float(d.audio_top_p), int(d.audio_top_k),
                             float(d.audio_repetition_penalty)),
    )


def narration_options(cfg: DictConfig, tiny: bool) -> NarrationOptions:
    from pipeline.narration.narrate import NarrationOptions

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
        # prepare() resolves model=auto later; a model named tiny is known to be tiny already
        quality=quality_options(cfg, tiny or str(cfg.model) == "tiny"),
    )


def quality_options(cfg: DictConfig, tiny: bool) -> QualityOptions | None:
    """`quality` as the narrator's options; None when switched off (or absent from the config).
    `act: auto` acts on real models only: the tiny random model's noise fails every check."""
    from pipeline.quality.decisions import QualityOptions

    q = cfg.get("quality")
    if q is None or not bool(q.enabled):
        return None
    act = (not tiny) if str(q.act) == "auto" else bool(q.act)
    try:
        return QualityOptions(
            act=act, similarity=bool(q.similarity), wer=bool(q.wer), asr=str(q.asr),
            asr_path=None if q.asr_path is None else str(q.asr_path), wer_sample=float(q.wer_sample),
            min_similarity=float(q.min_similarity), min_similarity_to_run=float(q.min_similarity_to_run),
            similarity_mads=float(q.similarity_mads), min_similarity_margin=float(q.min_similarity_margin),
            min_history=int(q.min_history), max_wer=float(q.max_wer), min_wer_words=int(q.min_wer_words),
            max_regenerations=int(q.max_regenerations),
        )
    except ValueError as error:  # the schema checks each key; this is the last word on their combination
        raise InputError("quality", "", str(error), "fix the quality settings in the config") from error


def report_enabled(cfg: DictConfig) -> bool:
    """Whether job=narrate ends by writing the quality report."""
    q = cfg.get("quality")
    return q is None or bool(q.get("report", True))


def pause_options(cfg: DictConfig) -> PauseOptions:
    p = cfg.finish.pauses
    return PauseOptions(clause_s=float(p.clause), sentence_s=float(p.sentence), paragraph_s=float(p.paragraph),
                        chapter_s=float(p.chapter), lead_in_s=float(p.lead_in))


def finish_options(cfg: DictConfig) -> FinishOptions:
    from pipeline.finishing.finish import FinishOptions

    f = cfg.finish
    subtitles = f.subtitles
    if isinstance(subtitles, bool):  # the older switch, read as FinishOptions reads it: on = split cues
        subtitles = "sentences" if subtitles else None
    return FinishOptions(
        pauses=pause_options(cfg),
        loudness_preset=str(f.loudness_preset),
        target_lufs=None if f.target_lufs is None else float(f.target_lufs),
        true_peak_db=float(f.true_peak_db),
        lossy_format=None if f.lossy_format is None else str(f.lossy_format),
        lossy_bitrate=str(f.lossy_bitrate),
        subtitles=None if subtitles is None else str(subtitles),
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


# --- job=synthesize ----------------------------------------------------------------------


def job_count(cfg: DictConfig, name: str) -> int:
    """`job.<name>` as a whole number of at least 1 (an InputError otherwise)."""
    value = cfg.job.get(name)
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise InputError(f"job.{name}=", str(value), "must be a whole number of at least 1", f"set job.{name}=1 or more")
    return number


def dataset_loudness(cfg: DictConfig) -> float | None:
    return None if cfg.job.loudness_lufs is None else float(cfg.job.loudness_lufs)


def dataset_prepare_options(cfg: DictConfig) -> PrepareOptions:
    from pipeline.dataset.prepare import PrepareOptions
    from pipeline.dataset.voices import ASSIGNMENTS

    job = cfg.job
    if str(job.assignment) not in ASSIGNMENTS:
        raise InputError("job.assignment=", str(job.assignment), "is not a voice assignment",
                         f"valid choices: {', '.join(ASSIGNMENTS)}")
    return PrepareOptions(target_seconds=float(job.target_seconds), max_seconds=float(job.max_seconds),
                          max_row_seconds=float(job.max_row_seconds), language=str(cfg.language),
                          assignment=str(job.assignment), assignment_seed=int(job.assignment_seed),
                          rates=speaking_rates(cfg.plan.speaking_rate), loudness_lufs=dataset_loudness(cfg))


def dataset_synth_options(cfg: DictConfig, narration: NarrationOptions) -> SynthOptions:
    from pipeline.dataset.synth import SynthOptions

    return SynthOptions(narration=narration, loudness_lufs=dataset_loudness(cfg),
                        true_peak_db=float(cfg.finish.true_peak_db))
