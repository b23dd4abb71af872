"""Shared fixtures: tiny random-weight checkpoints built once per test run (same loaders as the
released checkpoints), and paths to the shared real inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def pytest_configure(config):
    """Under pytest-xdist (the fast tier's `-n auto`) each worker takes its share of the cores for
    torch's intra-op threads: by default every worker would use them all and oversubscribe them."""
    import os

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from moss_model.tiny import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "moss-tts-tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from moss_model.loading import load_tts

    torch.manual_seed(0)
    return load_tts(tiny_model_dir)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the tests that need it (no dashboard)."""
    import os

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    """Tiny model and codec folders side by side (the model's processor config names the codec)."""
    from moss_model.tiny import write_tiny_checkpoints

    return write_tiny_checkpoints(tmp_path_factory.mktemp("tiny-pair"), seed=0)
