"""Job "synthesize": many texts x many voices in, a sharded, resumable speech dataset out.

Orchestration only: check the input, voices, model and options before any model loads; stream
the input into the manifest (work items in shard order, rejects with reasons); run the pending
shards' rows through a pool of synthesizer actors with Ray Data; cut each shard (a Ray task) the
moment its last row is stored; write the dataset card; print a summary. The driver holds counts
per shard, never audio. The work itself lives in pipeline/dataset/.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from jobs.config import (ClusterOptions, cluster_options, dataset_key_inputs, dataset_prepare_options,
                         dataset_synth_options, job_count, narration_options)
from jobs.output import OutputPlace, claim_remote, fetch_inputs, fresh_staging, output_place, publish, remote_problems
from jobs.settings import ConfigError, claim_output, output_problems
from moss_model.codec.rates import DEFAULT_SAMPLE_RATE
from pipeline.dataset import card, manifest, shards
from pipeline.dataset.prepare import PrepareOptions, Preparer, prepare_rows
from pipeline.dataset.rows import check_readable, input_files, read_rows
from pipeline.dataset.synth import SynthOptions
from pipeline.dataset.voices import DatasetVoice, load_voices
from pipeline.errors import InputError
from pipeline.narration.models import ModelChoice, resolve_model

MANIFEST_COLUMNS = ["shard", "key", "voice", "normalized_text", "est_frames", "tokens"]  # what the actors read


@dataclass(frozen=True)
class SynthesizeSetup:
    """Everything decided before a model loads."""

    input: Path
    output: Path  # where the files are written (for an object-storage output: its staging folder)
    store: str  # the result store: a folder or a URL
    model: ModelChoice
    model_revision: str
    voices: dict[str, DatasetVoice]
    prepare: PrepareOptions
    synth: SynthOptions
    cluster: ClusterOptions
    shard_size: int
    batch_rows: int
    shard: shards.ShardOptions
    command: str
    remote: str | None = None  # the output's URL on object storage


def prepare(cfg: DictConfig) -> SynthesizeSetup:
    """Validate every input and option and decide the model, before any model loads."""
    import torch

    from moss_model.checkpoint import CheckpointError, resolve_checkpoint
    from moss_model.loading import checkpoint_fingerprint

    job = cfg.job
    place = output_place(cfg)
    cfg, _ = fetch_inputs(cfg, ("input", "voices"))
    files = input_files(str(cfg.input))
    check_readable(files)
    voices = load_voices(None if cfg.get("voices") is None else str(cfg.voices))
    prepare_options = dataset_prepare_options(cfg)
    cuda = torch.cuda.is_available()
    model = resolve_model(str(cfg.model), cuda)
    try:
        revision = checkpoint_fingerprint(resolve_checkpoint(model.checkpoint))
    except CheckpointError as error:
        raise InputError(f"model={cfg.model}", "", str(error), "pass a local checkpoint folder or model=tiny") from error
    narration = narration_options(cfg, model.tiny)
    cluster = cluster_options(cfg, cuda)
    overwrite = bool(cfg.get("overwrite", False))
    problems = (remote_problems(place.remote, None, overwrite) if place.remote
                else output_problems(place.local, None, overwrite))
    if problems:
        raise ConfigError(problems)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    fresh_staging(place)
    output = claim_output(place.local, None, "synthesize", config_yaml)
    if place.remote:
        claim_remote(place.remote, None, "synthesize", config_yaml)
    decoding = json.dumps(asdict(narration.decoding), sort_keys=True)
    return SynthesizeSetup(
        input=Path(str(cfg.input)).expanduser(),
        output=output,
        store=place.store,
        remote=place.remote,
        model=model,
        model_revision=revision,
        voices=voices,
        prepare=prepare_options,
        synth=dataset_synth_options(cfg, narration),
        cluster=cluster,
        shard_size=job_count(cfg, "shard_size"),
        batch_rows=job_count(cfg, "batch_rows"),
        shard=shards.ShardOptions(model_id=model.checkpoint, model_revision=revision, decoding=decoding,
                                  sample_rate=DEFAULT_SAMPLE_RATE, include_codes=bool(job.include_codes),
                                  webdataset=bool(job.webdataset)),
        command=_command(cfg),
    )


def _command(cfg: DictConfig) -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # composed outside the command (tests, the API)
        overrides = ["job=synthesize", f"input={cfg.input}", f"voices={cfg.get('voices')}", f"output={cfg.output}",
                     f"model={cfg.model}"]
    return "python -m pipeline.run " + " ".join(overrides)


def write_work_list(setup: SynthesizeSetup) -> manifest.ManifestInfo:
    """Stream the input into the manifest and the rejects file (no model needed)."""
    decoding = json.loads(setup.shard.decoding)
    inputs = dataset_key_inputs(setup.model.checkpoint, setup.model_revision, decoding)
    preparer = Preparer(setup.voices, inputs, setup.prepare)
    return manifest.write_manifest(prepare_rows(read_rows(setup.input), preparer), setup.output, setup.shard_size)


def pending_shards(setup: SynthesizeSetup, info: manifest.ManifestInfo) -> list[int]:
    """Shards not yet present with this run's digest; shards of another shard count are removed."""
    folder = setup.output / shards.DATA_DIR
    current = {shards.shard_name(i, info.shards) for i in range(info.shards)}
    for stale in list(folder.glob(f"{shards.SPLIT}-*-of-*.parquet")) if folder.is_dir() else []:
        if stale.name not in current:
            stale.unlink()
    for partial in (folder.glob(".*.partial") if folder.is_dir() else []):  # left by a killed run
        partial.unlink(missing_ok=True)
    return [i for i in range(info.shards)
            if shards.shard_digest(folder / shards.shard_name(i, info.shards)) != info.shard_digests[i]]


def synthesize(setup: SynthesizeSetup, info: manifest.ManifestInfo, pending: list[int]) -> dict:
    """The pending shards' rows through the actor pool; each shard cut as soon as its rows are stored."""
    from tqdm import tqdm

    from jobs import ray_runtime

    figures = {"rows": 0, "generated": 0, "reused": 0, "flagged": 0, "attempts": 0, "frames": 0,
               "audio_seconds": 0.0, "model_seconds": 0.0, "actor_seconds": 0.0}
    if not pending:
        return figures
    remaining = {i: info.shard_rows[i] for i in pending}
    worker = ray_runtime.SynthesizerArgs(setup.model, setup.cluster,
                                         {name: voice.spec for name, voice in setup.voices.items()}, setup.synth,
                                         str(setup.store))
    batches = ray_runtime.synthesized_rows(setup.output / manifest.MANIFEST_FILE, MANIFEST_COLUMNS,
                                           None if len(pending) == info.shards else set(pending), worker,
                                           setup.batch_rows)
    writes = []
    total = sum(remaining.values())
    started = time.perf_counter()
    with tqdm(total=total, unit="row", desc="synthesizing", dynamic_ncols=True) as progress:
        for rows in batches:
            for row in rows:
                figures["rows"] += 1
                figures["generated" if not row["reused"] else "reused"] += 1
                figures["flagged"] += row["flagged"]
                figures["attempts"] += row["attempts"]
                figures["frames"] += row["frames"]
                figures["audio_seconds"] += row["audio_seconds"]
                figures["model_seconds"] += row["model_seconds"]
                figures["actor_seconds"] += row["wall_seconds"]
                remaining[row["shard"]] -= 1
                if remaining[row["shard"]] == 0:
                    writes.append(ray_runtime.start_light_task(shards.write_shard, setup.output, row["shard"], info,
                                                               str(setup.store), setup.shard))
            seconds = time.perf_counter() - started
            hours = figures["audio_seconds"] / 3600
            progress.set_postfix_str(f"audio {hours:.3f} h, {figures['rows'] / max(seconds, 1e-9):.2f} rows/s, "
                                     f"rejects {info.rejects}", refresh=False)
            progress.update(len(rows))
    ray_runtime.wait_for(writes)
    unfinished = [i for i, left in remaining.items() if left]
    if unfinished:
        raise RuntimeError(f"shards {unfinished} did not receive all their rows")
    return figures


def embedded_cluster(cluster: ClusterOptions) -> ClusterOptions:
    """An embedded Ray gets one CPU beyond what the actors claim: Ray Data's file listing needs one,
    and with every CPU held by an actor (2 actors on 2 cores) the pipeline would never start."""
    if cluster.address:
        return cluster
    wanted = math.ceil(cluster.num_actors * cluster.cpus_per_actor) + 1
    return replace(cluster, num_cpus=max(cluster.num_cpus or os.cpu_count() or 1, wanted))


def run(cfg: DictConfig) -> dict:
    from jobs import ray_runtime

    started = time.perf_counter()
    setup = prepare(cfg)
    if setup.model.tiny:
        print(f"model: tiny random checkpoint ({setup.model.name}): the audio is noise")
    info = write_work_list(setup)
    pending = pending_shards(setup, info)
    print(f"dataset: {info.rows} rows in {info.shards} shard(s) of up to {info.shard_size}, "
          f"{info.shards - len(pending)} already finished; {info.rejects} input row(s) rejected"
          + (f" ({', '.join(f'{k} {v}' for k, v in info.reject_reasons.items())}; see rejects.jsonl)"
             if info.rejects else ""))
    synth_started = time.perf_counter()
    with ray_runtime.connect(embedded_cluster(setup.cluster)):
        figures = synthesize(setup, info, pending)
    synth_seconds = time.perf_counter() - synth_started
    totals = card.totals(shards.shard_summary_columns(setup.output))
    card.write_card(setup.output, totals, info, setup.command, setup.model.checkpoint, setup.model_revision,
                    setup.model.tiny, setup.shard.decoding)
    publish(OutputPlace(setup.output, setup.remote, setup.store))  # an object-storage output: copied there
    summary = {
        **figures,
        "dataset_rows": totals.rows,
        "shards": info.shards,
        "shards_written": len(pending),
        "rejects": info.rejects,
        "audio_hours": totals.seconds / 3600,
        "flagged_rows": totals.flagged_rows,
        "synthesis_seconds": synth_seconds,
        "rows_per_second": figures["rows"] / synth_seconds if synth_seconds else 0.0,
        "outside_model_share": (1 - figures["model_seconds"] / figures["actor_seconds"]
                                if figures["actor_seconds"] else None),
        "wall_seconds": time.perf_counter() - started,
        "output": setup.remote or str(setup.output),
    }
    print(format_summary(summary))
    return summary


def format_summary(s: dict) -> str:
    outside = "n/a" if s["outside_model_share"] is None else f"{s['outside_model_share']:.0%}"
    return "\n".join([
        "dataset finished",
        f"  rows:      {s['dataset_rows']} in {s['shards']} shard(s) ({s['shards_written']} written now); "
        f"{s['generated']} generated, {s['reused']} reused from the store, {s['flagged_rows']} flagged, "
        f"{s['rejects']} rejected",
        f"  audio:     {s['audio_hours']:.4f} h",
        f"  speed:     {s['rows_per_second']:.2f} rows/s over {s['synthesis_seconds']:.1f} s; "
        f"{outside} of the actors' time outside model steps",
        f"  output:    {s['output']} (README.md, data/, rejects.jsonl)",
    ])
