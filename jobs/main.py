"""The command's entry point: the Hydra main that checks the composed config and hands it to the
job it names (`python -m pipeline.run job=<name> [key=value ...]`: pipeline/run.py runs this module as
the main program).

Exit codes: 0 done, 2 bad input or configuration (nothing written), 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from jobs import JOBS, get_job
from pipeline.errors import InputError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
_entered = False  # whether Hydra got as far as calling main (else the command line itself was bad)
_COMMAND_LINE_HINT = (
    "error: the command line could not be read as configuration (see above). What to do: write each setting as "
    "key=value with a key from conf/config.yaml; quote values with spaces, commas, quotes or other punctuation "
    "for the shell and for Hydra, e.g. 'voice_text=\"It is, as they say, late.\"', or put a transcript in a file "
    "and pass voice_text_file=PATH")


def register_resolvers() -> None:
    """The resolvers conf/config.yaml uses; call before composing it (idempotent).

    ${stem:path} -> the file name without its suffix (the default output folder).
    """
    if not OmegaConf.has_resolver("stem"):
        OmegaConf.register_new_resolver("stem", lambda path: Path(str(path)).stem)


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


# An absolute folder: Hydra would read a relative one as the package "conf" (this module is
# imported, not run as a script), which is not importable from another working directory.
@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    global _entered
    _entered = True
    register_resolvers()
    try:
        from jobs.settings import check_config

        if str(cfg.job.name) not in JOBS:
            raise InputError(f"job.name={cfg.job.name}", "", f"unknown job {str(cfg.job.name)!r}; valid choices: "
                             f"{', '.join(sorted(JOBS))}", "pick one with job=NAME")
        check_config(cfg)
        get_job(cfg.job.name)(cfg)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {_stored_note(cfg)}; run the same command again to resume.", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


def _stored_note(cfg: DictConfig) -> str:
    """How many finished segments the store holds (all of them survive an interrupt)."""
    try:
        from jobs.config import job_paths

        store = job_paths(cfg)[1]
        count = sum(1 for _ in (store / "segments").rglob("*.safetensors")) if (store / "segments").is_dir() else 0
        return f"{count} finished segment(s) are kept in {store}"
    except Exception:  # the note must never turn an interrupt into a traceback
        return "finished segments are kept in the segment store"


def _unreadable_overrides(args: list[str]) -> list[str]:
    """The command-line settings Hydra's grammar rejects (to name them in the message)."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = OverridesParser.create()
    except Exception:
        return []
    bad = []
    for arg in args:
        if arg.startswith("-"):
            continue
        try:
            parser.parse_override(arg)
        except Exception:
            bad.append(arg)
    return bad


def cli() -> None:
    """Hydra's own errors (a bad override, an unknown key or group choice) are bad input too: exit 2."""
    register_resolvers()
    try:
        main()
    except SystemExit as exit_:
        if exit_.code == 1 and not _entered:
            for arg in _unreadable_overrides(sys.argv[1:]):
                print(f"error: {arg}: this setting cannot be read (quoting)", file=sys.stderr)
            print(_COMMAND_LINE_HINT, file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        raise
    except KeyboardInterrupt:
        print("\ninterrupted.", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    cli()
