"""Interrupts through the real command on a real local Ray with the tiny checkpoint (CPU):
Ctrl-C ends the run with one line and exit 130, and the run's Ray processes end with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.narration.store import SegmentStore

pytestmark = pytest.mark.e2e  # real command, Ray and narration end to end: `make test-e2e`

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BOOK = "# Interrupted\n\n" + "\n\n".join(
    f"## Part {n}\n\nThe tide came in at dawn and the gulls were loud. Mara counted the boats twice, then once more.\n\n"
    f"Evening fell on part {n}. The lamp was lit, and the harbour slept until the bell."
    for n in range(1, 9)
)


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, session id) of every process (Linux /proc)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[3]))
    return table


def run_processes(driver: int) -> set[int]:
    """The driver's descendants and every process of its session (Ray's daemons and workers)."""
    table = process_table()
    found = {pid for pid, (_, session) in table.items() if session == driver}
    frontier = {driver}
    while frontier:
        children = {pid for pid, (parent, _) in table.items() if parent in frontier} - found
        found |= children
        frontier = children
    found.discard(driver)
    return found


def alive(pids: set[int]) -> set[int]:
    left = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            left.add(pid)
    return left


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_ctrl_c_during_narration_is_one_line_exit_130_and_no_ray_left(tmp_path: Path):
    book = tmp_path / "book.md"
    book.write_text(BOOK, encoding="utf-8")
    output = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "RAY_AUTH_MODE": "disabled"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "pipeline.run", f"input={book}", f"output={output}", "model=tiny",
         "narration.capacity=2", "finish.lossy_format=null"],
        cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = SegmentStore(str(output / "store"))
    deadline = time.time() + 240
    while time.time() < deadline and driver.poll() is None:
        if (output / "store").exists() and len(store.keys()) >= 2:
            break
        time.sleep(0.2)
    assert driver.poll() is None, "the run ended before it could be interrupted"
    ray_processes = run_processes(driver.pid)
    assert ray_processes, "no Ray processes were seen under the driver"
    os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    stdout, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1 and "run the same command again to resume" in lines[0], stderr[-3000:]
    assert "finished segment(s) are kept in" in lines[0]
    stored = len(store.keys())
    assert stored >= 2
    deadline = time.time() + 10
    while alive(ray_processes) and time.time() < deadline:
        time.sleep(0.5)
    assert not alive(ray_processes), f"Ray processes of the run still alive 10 s after it ended: {alive(ray_processes)}"
    time.sleep(1.0)
    assert len(store.keys()) == stored  # nothing writes into the store after the run has ended
    assert not (output / "index" / "book" / "book.parquet").exists()


SMALL_BOOK = """# A Small Test Book

## One

The tide came in at dawn. The gulls were loud.

Mara counted the boats twice.

## Two

Evening fell. The lamp was lit, and the harbour slept.

## Three

Nothing else happened that night.
"""


def narrate_args(book: Path, output: Path, voice: Path, transcript: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.run", f"input={book}", f"output={output}", "model=tiny", f"voice={voice}",
            f'voice_text="{transcript}"', "narration.capacity=4", "finish.lossy_format=null"]


def book_result(output: Path) -> tuple[list, list, dict]:
    import pyarrow.parquet as pq

    from pipeline.narration.narrate import codes_digest

    segments = pq.read_table(output / "index" / "segments" / "segments.parquet").to_pylist()
    chapters = pq.read_table(output / "index" / "chapters" / "chapters.parquet").to_pylist()
    store = SegmentStore(str(output / "store"))
    return ([(s["key"], s["frames"], s["start_sample"], s["end_sample"]) for s in segments],
            [(c["chapter_index"], c["num_samples"]) for c in chapters],
            {s["key"]: codes_digest(store.get(s["key"]).codes) for s in segments})


POINTS = {
    "planned": lambda out: (out / "plan.parquet").is_file(),
    "narrating": lambda out: (out / "store").exists() and len(SegmentStore(str(out / "store")).keys()) >= 2,
    "finishing": lambda out: (out / "chapters").is_dir(),
}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_kill_9_of_the_driver_at_three_points_then_a_rerun_equals_an_uninterrupted_run(shared_data, tmp_path):
    voice = shared_data / "voices" / "reference_en.m4a"
    transcript = next(line.split("\t", 1)[1] for line in (shared_data / "voices" / "transcripts.tsv").read_text()
                      .splitlines() if line.startswith("reference_en.m4a"))
    book = tmp_path / "small.md"
    book.write_text(SMALL_BOOK, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "RAY_AUTH_MODE": "disabled"}
    reference = tmp_path / "reference"
    done = subprocess.run(narrate_args(book, reference, voice, transcript), cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = book_result(reference)
    for point, reached in POINTS.items():
        output = tmp_path / point
        driver = subprocess.Popen(narrate_args(book, output, voice, transcript), cwd=tmp_path, env=env,
                                  start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen: set[int] = set()
        deadline = time.time() + 300
        while time.time() < deadline and driver.poll() is None and not reached(output):
            seen |= run_processes(driver.pid)
            time.sleep(0.05)
        assert driver.poll() is None, f"the run ended before the point {point!r}"
        seen |= run_processes(driver.pid)
        os.kill(driver.pid, signal.SIGKILL)  # the driver alone: its Ray processes are orphaned
        driver.wait()
        deadline = time.time() + 10
        while alive(seen) and time.time() < deadline:
            time.sleep(0.5)
        assert not alive(seen), f"{point}: processes of the killed run still alive after 10 s"
        assert not (output / "index" / "book" / "book.parquet").exists()
        rerun = subprocess.run(narrate_args(book, output, voice, transcript), cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, f"{point}: {rerun.stderr[-3000:]}"
        assert book_result(output) == expected, point
    # Finishing again removes the completion marker before it writes: killed midway, no stale
    # book table sits beside new audio; run again, it completes.
    finish = [*narrate_args(book, output, voice, transcript), "job=finish", "finish.loudness_preset=podcast"]
    driver = subprocess.Popen(finish, cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and driver.poll() is None and (output / "index" / "book" / "book.parquet").exists():
        time.sleep(0.05)
    assert driver.poll() is None, "job=finish ended before it could be interrupted"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert not (output / "index" / "book" / "book.parquet").exists()
    again = subprocess.run(finish, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (output / "index" / "book" / "book.parquet").is_file()


def test_a_cluster_that_cannot_place_an_actor_fails_in_bounded_time(tmp_path):
    """cluster=ray on nodes without GPUs: exit 2 after cluster.placement_timeout_s, naming what was
    asked and what the cluster has (the cluster here is one CPU-only node started for the test)."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(
        [sys.executable, "-c", "import ray, sys; c = ray.init(num_cpus=1, num_gpus=0, include_dashboard=False); "
         "print(c.address_info['gcs_address'], flush=True); sys.stdin.read(); ray.shutdown()"],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        address = head.stdout.readline().strip()
        assert address, "the test cluster did not start"
        book = tmp_path / "book.md"
        book.write_text(SMALL_BOOK, encoding="utf-8")
        started = time.time()
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.run", f"input={book}", f"output={tmp_path / 'out'}", "model=tiny",
             "cluster=ray", f"cluster.address={address}", "cluster.num_actors=1", "cluster.gpus_per_actor=1",
             "cluster.cpus_per_actor=1", "cluster.placement_timeout_s=3"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
        assert result.returncode == 2, result.stderr[-3000:]
        assert time.time() - started < 120
        assert "cannot place 1 narrator actor(s) of 1 GPU(s)" in result.stderr
        assert "after waiting 3 s" in result.stderr and "0 GPU(s)" in result.stderr
        assert "cluster.gpus_per_actor" in result.stderr and "Traceback" not in result.stderr
    finally:
        head.stdin.close()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
