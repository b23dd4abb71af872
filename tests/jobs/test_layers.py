"""The layers' import rules, read from the source (no module is imported):

- no job imports another job; a job imports only the shared job modules, pipeline/ and moss_model/;
- Ray is imported by the adapter (jobs/ray_runtime.py) alone;
- nothing in pipeline/ imports the job layer (pipeline/run.py runs jobs/main.py as the main
  program, without importing it);
- a stage of pipeline/ imports only the stages before it: reading, text, narration, finishing;
- moss_model/ imports none of pipeline/, jobs/, Ray or Hydra.
"""

from __future__ import annotations

import ast
from pathlib import Path

from jobs import JOBS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED = {"jobs", "jobs.config", "jobs.common", "jobs.output", "jobs.settings", "jobs.ray_runtime"}


def imported(path: Path) -> set[str]:
    """Every module `path` imports (anywhere in it), `from jobs import x` counted as jobs.x."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names if node.module == "jobs")
    return names


def test_no_job_imports_another_job():
    jobs = {target.partition(":")[0] for target in JOBS.values()}
    assert jobs == {"jobs.narrate", "jobs.plan", "jobs.finish", "jobs.synthesize", "jobs.report"}
    for job in sorted(jobs):
        own = {name for name in imported(PROJECT_ROOT / (job.replace(".", "/") + ".py")) if name.startswith("jobs")}
        assert own <= SHARED, f"{job} imports {sorted(own - SHARED)}"


def test_only_the_adapter_imports_ray():
    for path in sorted((PROJECT_ROOT / "jobs").glob("*.py")) + sorted((PROJECT_ROOT / "pipeline").rglob("*.py")):
        uses_ray = any(name == "ray" or name.startswith("ray.") for name in imported(path))
        assert uses_ray == (path.name == "ray_runtime.py" and path.parent.name == "jobs"), path


def test_pipeline_does_not_import_the_job_layer():
    for path in sorted((PROJECT_ROOT / "pipeline").rglob("*.py")):
        jobs = {name for name in imported(path) if name == "jobs" or name.startswith("jobs.")}
        assert not jobs, f"{path.relative_to(PROJECT_ROOT)} imports {sorted(jobs)}"


STAGES = ["reading", "text", "narration", "finishing"]  # in a book's order


def test_stages_import_only_earlier_stages():
    for position, stage in enumerate(STAGES):
        later = {f"pipeline.{name}" for name in STAGES[position + 1:]}
        for path in sorted((PROJECT_ROOT / "pipeline" / stage).rglob("*.py")):
            wrong = {name for name in imported(path) if any(name == p or name.startswith(p + ".") for p in later)}
            assert not wrong, f"{path.relative_to(PROJECT_ROOT)} imports {sorted(wrong)}"


def test_the_model_imports_no_other_layer():
    banned = ("pipeline", "jobs", "ray", "hydra", "omegaconf")
    for path in sorted((PROJECT_ROOT / "moss_model").rglob("*.py")):
        wrong = {name for name in imported(path) if name.split(".")[0] in banned}
        assert not wrong, f"{path.relative_to(PROJECT_ROOT)} imports {sorted(wrong)}"
