"""The command: python -m pipeline.run job=<name> [key=value ...]."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from jobs import get_job
from pipeline.errors import InputError

# ${stem:path} -> the file name without its suffix (used for the default output folder).
if not OmegaConf.has_resolver("stem"):
    OmegaConf.register_new_resolver("stem", lambda path: Path(str(path)).stem)


@hydra.main(config_path="../conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    try:
        get_job(cfg.job.name)(cfg)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
