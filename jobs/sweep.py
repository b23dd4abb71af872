"""Where a job writes: its output folder, and the segment store it shares.

A single run writes to ``output`` and keeps its segments in ``<output>/store``. In a Hydra
multirun (``-m finish.loudness_preset=audiobook,podcast``) every job gets a folder of its
own under ``output``, named by the overrides that set it apart
(``<output>/finish.loudness_preset=podcast``), while the store stays ``<output>/store`` for
all of them: segments are keyed by everything that shapes their audio, so jobs that agree
on a segment share it and none overwrites another's files. ``store=DIR`` puts the store
elsewhere in either case.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig

STORE_DIR = "store"
_UNSAFE = re.compile(r"[^\w.,=+\-]+")


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
