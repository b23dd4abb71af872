"""Job "plan": manuscript -> narration plan (Parquet) and a printed summary. No GPU, no Ray."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline.keys import KeyInputs
from pipeline.lexicon import Lexicon
from pipeline.plan import PLAN_FILE, PlanOptions, PlanSummary, build_plan, write_plan
from pipeline.reading import ReadOptions, read_book
from pipeline.segment import SpeakingRates


def plan_options(cfg: DictConfig) -> PlanOptions:
    """The typed plan options from the composed config (OmegaConf stops here)."""
    plan = cfg.plan
    return PlanOptions(
        target_seconds=float(plan.target_seconds),
        max_seconds=float(plan.max_seconds),
        max_run_seconds=float(plan.max_run_seconds),
        rates=SpeakingRates(en=float(plan.speaking_rate.en), zh=float(plan.speaking_rate.zh)),
        language=str(cfg.language),
        read=ReadOptions(
            skip_kinds=tuple(str(kind).lower() for kind in plan.skip_front_matter),
            chapter_pattern=plan.chapter_pattern,
            encoding=plan.encoding,
            max_archive_bytes=int(float(plan.get("max_archive_mb", 512)) * 2**20),
            max_compression_ratio=float(plan.get("max_compression_ratio", 200)),
        ),
        polyphones=str(plan.polyphones or ""),
    )


def key_inputs(cfg: DictConfig) -> KeyInputs:
    narration = cfg.narration
    return KeyInputs(
        voice_id=str(narration.voice_id),
        model_id=str(narration.model_id),
        model_revision=str(narration.model_revision),
        decoding=OmegaConf.to_container(narration.decoding, resolve=True),
        seed_policy=str(narration.seed_policy),
        carryover_bound_frames=int(narration.carryover_bound_frames),
    )


def run(cfg: DictConfig) -> PlanSummary:
    from jobs.settings import ConfigError, check_files, claim_output, output_problems
    from jobs.sweep import job_paths

    output = job_paths(cfg)[0]
    source = Path(str(cfg.input)).expanduser()
    problems = [p for p in check_files(cfg) if p[0] in ("input", "lexicon")]
    problems += output_problems(output, source if source.is_file() else None, bool(cfg.get("overwrite", False)))
    if problems:
        raise ConfigError(problems)
    options = plan_options(cfg)
    book = read_book(source, options.read)
    lexicon = Lexicon.load(cfg.lexicon, polyphones=options.polyphones)
    plan = build_plan(book, options, lexicon, key_inputs(cfg))
    folder = claim_output(output, source, str(cfg.job.name), OmegaConf.to_yaml(cfg, resolve=True))
    path = write_plan(plan, folder / PLAN_FILE)
    summary = plan.summary()
    print(summary.format())
    print(f"  plan written to {path}")
    return summary
