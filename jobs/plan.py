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
    options = plan_options(cfg)
    book = read_book(Path(cfg.input), options.read)
    lexicon = Lexicon.load(cfg.lexicon, polyphones=options.polyphones)
    plan = build_plan(book, options, lexicon, key_inputs(cfg))
    path = write_plan(plan, Path(cfg.output) / PLAN_FILE)
    (path.parent / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    summary = plan.summary()
    print(summary.format())
    print(f"  plan written to {path}")
    return summary
