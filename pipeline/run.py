"""The command: python -m pipeline.run job=<name> [key=value ...].

The Hydra entry point lives in the job layer (jobs/main.py); this module only runs it as the
main program, so pipeline/ never imports the jobs and importing this module does nothing.
"""
from __future__ import annotations

import runpy

if __name__ == "__main__":
    runpy.run_module("jobs.main", run_name="__main__")
