"""A Ray cluster of two nodes on this machine, started with `ray start` as on two machines: the book
is narrated by actors on both nodes, and losing the second node mid-run still finishes the book,
identical to a run on one machine.

The worker node declares a GPU it does not have (`--num-gpus 1`), so the actors are placed the way
they are on a GPU cluster; they find no CUDA device and run on the CPU.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile

from pipeline.narration.store import SegmentStore
from tests.raycluster import LocalCluster, ray_env

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BOOK = """# Two Lighthouses

## The North Light

The keeper climbed the stairs at dusk. He wound the clock and trimmed the wick.

The ships passed far out, and none of them stopped.

## The South Light

Her lamp was older. It smoked on windy nights, and she wrote each one down.

## Letters

They wrote to each other every spring. The letters took a month to arrive.
"""

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]


def narrate(output: Path, book: Path, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "pipeline.run", f"input={book}", f"output={output}", "model=tiny",
            "narration.capacity=2", "finish.lossy_format=null", *extra]
    env = {**ray_env(), "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.Popen(args, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(process: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-4000:]
    return out


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("book") / "lighthouses.md"
    path.write_text(BOOK, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def one_machine(book, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("one") / "out"
    finished(narrate(output, book, "cluster.num_actors=1"))
    return output


def assert_same_book(a: Path, b: Path) -> None:
    store_a, store_b = SegmentStore(str(a / "store")), SegmentStore(str(b / "store"))
    assert store_a.keys() == store_b.keys() and store_a.keys()
    for key in store_a.keys():
        x, y = store_a.get(key), store_b.get(key)
        assert np.array_equal(x.codes, y.codes) and x.audio.tobytes() == y.audio.tobytes()
    names = sorted(p.name for p in (a / "chapters").glob("*.flac"))
    assert names == sorted(p.name for p in (b / "chapters").glob("*.flac")) and names
    for name in names:
        assert np.array_equal(soundfile.read(a / "chapters" / name)[0], soundfile.read(b / "chapters" / name)[0])
    rows_a = pq.read_table(a / "index" / "segments" / "segments.parquet").to_pylist()
    rows_b = pq.read_table(b / "index" / "segments" / "segments.parquet").to_pylist()
    fields = ("key", "seed", "frames", "start_sample", "end_sample")
    assert [[r[f] for f in fields] for r in rows_a] == [[r[f] for f in fields] for r in rows_b]


def test_actors_on_two_nodes_narrate_the_book_and_survive_losing_one(book, one_machine, tmp_path):
    output = tmp_path / "out"
    with LocalCluster() as cluster:
        cluster.start_head(num_cpus=3, num_gpus=2)  # room to restart the lost node's actor here
        worker = cluster.add_node(num_cpus=2, num_gpus=1)
        process = narrate(output, book, "cluster=ray", f"cluster.address={cluster.address}", "cluster.num_actors=2",
                          "cluster.gpus_per_actor=1", "cluster.cpus_per_actor=1", "cluster.placement_timeout_s=60")
        store = SegmentStore(str(output / "store"))
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            if (output / "store").exists() and len(store.keys()) >= 2:
                break
            time.sleep(0.2)
        assert process.poll() is None, "the run ended before the node could be lost:\n" + process.stdout.read()[-3000:]
        assert cluster.kill_node(worker) > 0
        log = finished(process)
    assert "2 narrator actor(s) on 2 node(s)" in log
    assert_same_book(one_machine, output)
