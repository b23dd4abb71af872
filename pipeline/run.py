"""The command: python -m pipeline.run job=<name> [key=value ...].

A shim: the Hydra entry point lives in the job layer (jobs/main.py), so that nothing in
pipeline/ imports the jobs at import time.
"""
from __future__ import annotations


def cli() -> None:
    from jobs.main import cli as run_command

    run_command()


def register_resolvers() -> None:
    """The ${stem:...} resolver conf/config.yaml uses (for code that composes the config itself)."""
    from jobs.main import register_resolvers as register

    register()


# bench/narrate.py and bench/synthesize.py import this module to get the resolver registered.
register_resolvers()

if __name__ == "__main__":
    cli()
