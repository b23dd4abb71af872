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

from pipeline.store import SegmentStore

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
