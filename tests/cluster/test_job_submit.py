"""`ray job submit` as the README writes it: the sample book submitted to a running cluster through
Ray's job API (the dashboard's job server), with the project as the working directory, and waited
for until it succeeds."""

import json
import subprocess
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.raycluster import RAY, LocalCluster, ray_env

PROJECT_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]


def test_the_sample_book_submitted_as_a_job_finishes(tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    output = tmp_path / "sample"
    job_id = f"narrate-{uuid.uuid4().hex[:8]}"
    with LocalCluster() as cluster:
        cluster.start_head(num_cpus=3, dashboard=True)
        # The README's command: the project folder as working_dir (its .gitignore keeps .venv out),
        # the job itself `python -m pipeline.run` with cluster=ray, which joins the cluster it runs in.
        command = [RAY, "job", "submit", f"--address={cluster.dashboard_url}", f"--submission-id={job_id}",
                   f"--working-dir={PROJECT_ROOT}", "--runtime-env-json", json.dumps({"env_vars": {"TQDM_DISABLE": "1"}}),
                   "--", "python", "-m", "pipeline.run", "cluster=ray", "cluster.num_actors=1", "cluster.gpus_per_actor=0",
                   "cluster.cpus_per_actor=1", "model=tiny", f"output={output}", "finish.lossy_format=null"]
        for _ in range(20):  # the head's job agent starts a little after `ray start` returns
            submit = subprocess.run(command, env=ray_env(), capture_output=True, text=True, timeout=900)
            if "No available agent to submit job" not in submit.stderr:
                break
            time.sleep(2)
        assert "submitted successfully" in submit.stdout + submit.stderr, submit.stdout[-3000:] + submit.stderr[-3000:]
        client = JobSubmissionClient(cluster.dashboard_url)
        deadline = time.time() + 60
        while client.get_job_status(job_id) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
            assert time.time() < deadline, "the job did not end"
            time.sleep(1)
        status, logs = client.get_job_status(job_id), client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, f"{submit.stdout[-2000:]}\n{submit.stderr[-2000:]}\n{logs[-3000:]}"
    assert submit.returncode == 0
    plan = pq.read_table(output / "plan.parquet").to_pylist()
    segments = pq.read_table(output / "index" / "segments" / "segments.parquet").to_pylist()
    assert plan and len(segments) == len(plan) and (output / "index" / "book" / "book.parquet").is_file()
