"""A book narrated to object storage (`output=s3://...`) on a real S3 server on localhost (moto's
standalone server: the cloud is what this machine cannot have; the protocol, the client library,
our code and a real local Ray are real): killed midway, resumed from what the bucket holds, then
finished again by job=finish reading the bucket. The result equals a run on local disk."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import storage
from pipeline.narration.store import SegmentStore
from tests.s3server import s3_server

pytestmark = pytest.mark.e2e  # real command, Ray and narration end to end: `make test-e2e`

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BOOK = """# Harbour Notes

## Morning

The ferry left at six. Gulls followed it out past the breakwater.

The harbour master wrote the time in his book.

## Evening

The ferry came back late, and the lamps along the quay were already lit.
"""


@pytest.fixture(scope="module")
def s3():
    with s3_server("books") as env:
        yield env


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("book") / "harbour.md"
    path.write_text(BOOK, encoding="utf-8")
    return path


def command(book, output, *extra):
    return [sys.executable, "-m", "pipeline.run", f"input={book}", f"output={output}", "model=tiny",
            "narration.capacity=2", "finish.lossy_format=null", *extra]


def run_cli(*args, env=None) -> str:
    done = subprocess.run(list(args), cwd=PROJECT_ROOT, env={**os.environ, **(env or {}), "PYTHONPATH": str(PROJECT_ROOT),
                                                              "RAY_AUTH_MODE": "disabled"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_narrate_to_s3_resume_and_finish_from_it(s3, book, tmp_path):
    local = tmp_path / "local"
    run_cli(*command(book, local))
    url = "s3://books/harbour"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "RAY_AUTH_MODE": "disabled"}
    process = subprocess.Popen(command(book, url), cwd=PROJECT_ROOT, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    remote_store = SegmentStore(f"{url}/store")
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if storage.exists(f"{url}/store") and len(remote_store.keys()) >= 2:
            break
        time.sleep(0.3)
    assert process.poll() is None, "the run ended before it could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    stored_before = len(remote_store.keys())
    assert stored_before >= 2 and not storage.exists(f"{url}/index/book/book.parquet")

    out = run_cli(*command(book, url))  # the same command resumes from the bucket
    assert "reused from the store" in out and f"index:     {url}/index" in out
    local_store = SegmentStore(str(local / "store"))
    assert remote_store.keys() == local_store.keys()
    for key in local_store.keys():
        a, b = local_store.get(key), remote_store.get(key)
        assert np.array_equal(a.codes, b.codes) and a.audio.tobytes() == b.audio.tobytes()
    chapters = sorted(p.name for p in (local / "chapters").glob("*.flac"))
    assert chapters
    for name in chapters:
        assert storage.read_bytes(f"{url}/chapters/{name}") == (local / "chapters" / name).read_bytes()
    with storage.local_copy(f"{url}/index/segments/segments.parquet") as table:
        remote_rows = pq.read_table(table).to_pylist()
    local_rows = pq.read_table(local / "index" / "segments" / "segments.parquet").to_pylist()
    fields = ("key", "seed", "frames", "start_sample", "end_sample", "chapter_file")
    assert [[r[f] for f in fields] for r in remote_rows] == [[r[f] for f in fields] for r in local_rows]
    assert storage.exists(f"{url}/.moss-narrator.json") and storage.exists(f"{url}/index/book/book.parquet")

    # job=finish reads the bucket's store and publishes new files there, the book table last.
    before = storage.read_bytes(f"{url}/chapters/{chapters[0]}")
    run_cli(*command(book, url, "job=finish", "finish.loudness_preset=podcast"))
    assert storage.read_bytes(f"{url}/chapters/{chapters[0]}") != before  # louder: -16 LUFS, not -18
    with storage.local_copy(f"{url}/index/book/book.parquet") as table:
        assert pq.read_table(table).to_pylist()[0]["loudness_target_lufs"] == -16.0


def test_an_s3_output_holding_another_books_files_is_refused(s3, book, tmp_path):
    storage.write_text("s3://books/taken/notes.txt", "someone else's")
    result = subprocess.run(command(book, "s3://books/taken"), cwd=PROJECT_ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, timeout=300)
    assert result.returncode == 2 and "s3://books/taken" in result.stderr and "overwrite=true" in result.stderr
    assert storage.listdir("s3://books/taken") == ["notes.txt"]


def test_a_plan_from_a_manuscript_in_the_bucket_to_the_bucket(s3, book, tmp_path):
    storage.write_bytes("s3://books/manuscripts/harbour.md", book.read_bytes())
    out = run_cli(sys.executable, "-m", "pipeline.run", "job=plan", "input=s3://books/manuscripts/harbour.md",
                  "output=s3://books/plans/harbour")
    assert "plan written to s3://books/plans/harbour/plan.parquet" in out
    with storage.local_copy("s3://books/plans/harbour/plan.parquet") as table:
        plan = pq.read_table(table).to_pylist()
    assert any("ferry" in row["text"] for row in plan)
    assert sorted(storage.listdir("s3://books/plans/harbour")) == [".moss-narrator.json", "config.yaml", "plan.parquet"]
    local_out = tmp_path / "local-plan"  # a manuscript in the bucket, the plan on local disk
    run_cli(sys.executable, "-m", "pipeline.run", "job=plan", "input=s3://books/manuscripts/harbour.md",
            f"output={local_out}")
    assert sorted(p.name for p in local_out.iterdir()) == [".moss-narrator.json", "config.yaml", "plan.parquet"]
    missing = subprocess.run([sys.executable, "-m", "pipeline.run", "job=plan", "input=s3://books/manuscripts/nope.md",
                              f"output={tmp_path / 'x'}"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, timeout=300)
    assert missing.returncode == 2 and "s3://books/manuscripts/nope.md: cannot be read" in missing.stderr


def test_a_dataset_from_and_to_the_bucket(s3, tmp_path):
    import soundfile

    rng = np.random.default_rng(0)
    for name, tone in (("low", 180.0), ("high", 320.0)):
        t = np.arange(int(1.5 * 24000)) / 24000
        wave = 0.3 * np.sin(2 * np.pi * tone * t) + 0.01 * rng.standard_normal(t.size)
        local = tmp_path / f"{name}.wav"
        soundfile.write(local, wave.astype(np.float32), 24000)
        storage.write_bytes(f"s3://books/voices/{name}.wav", local.read_bytes())
    texts = "\n".join(f"Line number {i} of the harbour log." for i in range(6)) + "\n"
    storage.write_text("s3://books/texts/log.txt", texts)
    url = "s3://books/datasets/log"
    out = run_cli(sys.executable, "-m", "pipeline.run", "job=synthesize", "input=s3://books/texts/log.txt",
                  "voices=s3://books/voices", f"output={url}", "model=tiny", "job.shard_size=4",
                  "cluster.num_actors=1")
    assert "dataset finished" in out
    names = storage.listdir(f"{url}/data")
    assert len([n for n in names if n.endswith(".parquet")]) == 2, names
    with storage.local_copy(f"{url}/data") as folder:
        rows = pq.read_table(folder).to_pylist()
    assert len(rows) == 6 and {r["voice"] for r in rows} <= {"low", "high"}
    assert storage.exists(f"{url}/README.md") and storage.exists(f"{url}/store")
