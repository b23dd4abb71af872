"""The jobs `python -m pipeline.run job=<name>` can run: name -> "module:function".

Jobs are imported only when run, so a light job never pays for a heavy one's imports.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

JOBS: dict[str, str] = {
    "narrate": "jobs.narrate:run",
    "plan": "jobs.plan:run",
    "finish": "jobs.finish:run",
    "synthesize": "jobs.synthesize:run",
    "report": "jobs.report:run",
}


def get_job(name: str) -> Callable[[Any], Any]:
    """The function that runs job `name`; ValueError listing the valid names if there is none."""
    if name not in JOBS:
        raise ValueError(f"unknown job {name!r}; valid choices: {', '.join(sorted(JOBS))}")
    module, _, function = JOBS[name].partition(":")
    return getattr(importlib.import_module(module), function)
