"""Job "plan": manuscript -> narration plan (Parquet) and a printed summary. No GPU, no Ray."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from jobs.config import job_paths, plan_key_inputs, plan_options
from jobs.settings import ConfigError, check_files, claim_output, output_problems
from pipeline.index import write_atomically
from pipeline.lexicon import Lexicon
from pipeline.plan import PLAN_FILE, PlanSummary, build_plan, write_plan
from pipeline.reading import read_book


def run(cfg: DictConfig) -> PlanSummary:
    output = job_paths(cfg)[0]
    source = Path(str(cfg.input)).expanduser()
    problems = [p for p in check_files(cfg) if p[0] in ("input", "lexicon")]
    problems += output_problems(output, source if source.is_file() else None, bool(cfg.get("overwrite", False)))
    if problems:
        raise ConfigError(problems)
    options = plan_options(cfg)
    book = read_book(source, options.read)
    lexicon = Lexicon.load(cfg.lexicon, polyphones=options.polyphones)
    plan = build_plan(book, options, lexicon, plan_key_inputs(cfg))
    folder = claim_output(output, source, str(cfg.job.name), OmegaConf.to_yaml(cfg, resolve=True))
    path = write_atomically(folder / PLAN_FILE, lambda temporary: write_plan(plan, temporary))
    summary = plan.summary()
    print(summary.format())
    print(f"  plan written to {path}")
    return summary
