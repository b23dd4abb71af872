"""Job "plan": manuscript -> narration plan (Parquet) and a printed summary. No GPU, no Ray."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from jobs.config import plan_key_inputs, plan_options
from jobs.output import claim_remote, fetch_inputs, fresh_staging, output_place, publish, remote_problems
from jobs.settings import ConfigError, check_files, claim_output, output_problems
from pipeline import storage
from pipeline.index import write_atomically
from pipeline.reading import read_book
from pipeline.text.lexicon import Lexicon
from pipeline.text.plan import PLAN_FILE, PlanSummary, build_plan, write_plan


def run(cfg: DictConfig) -> PlanSummary:
    place = output_place(cfg)
    cfg, _ = fetch_inputs(cfg)
    source = Path(str(cfg.input)).expanduser()
    problems = [p for p in check_files(cfg) if p[0] in ("input", "lexicon")]
    overwrite = bool(cfg.get("overwrite", False))
    if place.remote:
        problems += remote_problems(place.remote, source if source.is_file() else None, overwrite)
    else:
        problems += output_problems(place.local, source if source.is_file() else None, overwrite)
    if problems:
        raise ConfigError(problems)
    options = plan_options(cfg)
    book = read_book(source, options.read)
    lexicon = Lexicon.load(cfg.lexicon, polyphones=options.polyphones)
    plan = build_plan(book, options, lexicon, plan_key_inputs(cfg))
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    fresh_staging(place)
    folder = claim_output(place.local, source, str(cfg.job.name), config_yaml)
    path = write_atomically(folder / PLAN_FILE, lambda temporary: write_plan(plan, temporary))
    if place.remote:
        claim_remote(place.remote, source, str(cfg.job.name), config_yaml)
        publish(place)
    summary = plan.summary()
    print(summary.format())
    print(f"  plan written to {storage.join(place.remote, PLAN_FILE) if place.remote else path}")
    return summary
