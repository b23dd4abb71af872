"""The narration job end to end on a real local Ray with the tiny checkpoint (CPU).

What cannot be had here is only the real model: model=tiny is the same loader and engine
with random weights, so the audio is noise but every file, key and index row is real.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile
from hydra import compose, initialize_config_dir

from jobs.main import register_resolvers
from pipeline.narration.narrate import codes_digest
from pipeline.narration.store import SegmentStore

pytestmark = pytest.mark.e2e  # real command, Ray and narration end to end: `make test-e2e`

register_resolvers()  # the ${stem:...} resolver the config uses
PROJECT_ROOT = Path(__file__).resolve().parents[2]
BOOK = """# A Small Test Book

## One

The tide came in at dawn. The gulls were loud.

Mara counted the boats twice.

## Two

Evening fell. The lamp was lit, and the harbour slept.

## Three

Nothing else happened that night.
"""


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base=None):
        return compose(config_name="config", overrides=list(overrides))


def cli(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "pipeline.run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("book") / "small.md"
    path.write_text(BOOK, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def voice(shared_data):
    path = shared_data / "voices" / "reference_en.m4a"
    transcript = next(line.split("\t", 1)[1] for line in (shared_data / "voices" / "transcripts.tsv").read_text().splitlines()
                      if line.startswith("reference_en.m4a"))
    return path, transcript


def overrides(book, output, voice):
    return [f"input={book}", f"output={output}", "model=tiny", f"voice={voice[0]}", f'voice_text="{voice[1]}"',
            "cluster.num_actors=2", "narration.capacity=4", "finish.lossy_format=null"]


@pytest.fixture(scope="module")
def uninterrupted(book, voice, ray_local, tmp_path_factory):
    from jobs.narrate import run

    output = tmp_path_factory.mktemp("run") / "out"
    summary = run(config(*overrides(book, output, voice)))
    return output, summary


def test_index_matches_plan_and_files(uninterrupted):
    output, summary = uninterrupted
    plan = pq.read_table(output / "plan.parquet").to_pylist()
    segments = pq.read_table(output / "index" / "segments" / "segments.parquet").to_pylist()
    chapters = pq.read_table(output / "index" / "chapters" / "chapters.parquet").to_pylist()
    assert [(s["chapter_index"], s["segment_index"], s["key"], s["text"]) for s in segments] == [
        (p["chapter_index"], p["segment_index"], p["key"], p["text"]) for p in plan]
    assert summary["segments"] == len(plan) and summary["generated"] == len(plan) and summary["reused"] == 0
    assert len(chapters) == 3
    for chapter in chapters:
        audio, rate = soundfile.read(output / chapter["flac_path"])  # paths are relative to the output
        assert rate == 24000 and len(audio) == chapter["num_samples"]
        rows = [s for s in segments if s["chapter_index"] == chapter["chapter_index"]]
        assert all(s["chapter_file"] == chapter["flac_path"] for s in rows)
        assert rows[0]["start_sample"] > 0 and rows[-1]["end_sample"] < len(audio)
        for row, following in zip(rows, rows[1:]):
            assert row["end_sample"] < following["start_sample"]  # a pause lies between
        for row in rows:  # each segment spans its frames' samples exactly
            assert row["end_sample"] - row["start_sample"] == row["frames"] * 1920
    assert (output / "index" / "book" / "book.parquet").is_file()


def test_carried_prefix_is_the_previous_segment(uninterrupted):
    output, _ = uninterrupted
    store = SegmentStore(str(output / "store"))
    segments = pq.read_table(output / "index" / "segments" / "segments.parquet").to_pylist()
    for previous, segment in zip(segments, segments[1:]):
        facts = store.get(segment["key"]).facts
        if segment["chapter_index"] != previous["chapter_index"]:
            assert facts["prefix_key"] is None  # a chapter starts from the voice reference
            continue
        assert facts["prefix_key"] == previous["key"]
        assert facts["prefix_digest"] == codes_digest(store.get(previous["key"]).codes)


def test_killed_run_resumes_to_the_same_result(uninterrupted, book, voice, tmp_path):
    from jobs.narrate import run

    output_a, _ = uninterrupted
    output_b = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "RAY_AUTH_MODE": "disabled"}
    process = subprocess.Popen([sys.executable, "-m", "pipeline.run", *overrides(book, output_b, voice)],
                               cwd=PROJECT_ROOT, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = SegmentStore(str(output_b / "store"))
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if (output_b / "store").exists() and len(store.keys()) >= 3:
            break
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)  # the driver, its embedded Ray and the actors
    process.wait()
    interrupted_with = len(store.keys())
    assert not (output_b / "index" / "book" / "book.parquet").exists()

    summary = run(config(*overrides(book, output_b, voice)))
    # An actor of the killed run may still store the segment it was on while Ray notices that
    # its driver is gone: such a segment is reused too.
    assert summary["reused"] >= interrupted_with >= 3
    a = pq.read_table(output_a / "index" / "segments" / "segments.parquet").to_pylist()
    b = pq.read_table(output_b / "index" / "segments" / "segments.parquet").to_pylist()
    fields = ("key", "seed", "frames", "start_sample", "end_sample", "attempts")
    assert [[row[f] for f in fields] for row in a] == [[row[f] for f in fields] for row in b]
    for key in (row["key"] for row in a):
        assert np.array_equal(SegmentStore(str(output_a / "store")).get(key).codes, store.get(key).codes)
    for name in sorted(p.name for p in (output_a / "chapters").glob("*.flac")):
        audio_a, _ = soundfile.read(output_a / "chapters" / name)
        audio_b, _ = soundfile.read(output_b / "chapters" / name)
        assert np.array_equal(audio_a, audio_b)


def test_one_actor_with_one_row_narrates_the_same_book(uninterrupted, book, voice, tmp_path):
    """The uninterrupted run had 2 actors of 4 rows; 1 actor of 1 row is another schedule entirely."""
    from jobs.narrate import run

    output_a, _ = uninterrupted
    output_b = tmp_path / "out"
    settings = [o for o in overrides(book, output_b, voice) if not o.startswith(("cluster.num_actors", "narration.capacity"))]
    run(config(*settings, "cluster.num_actors=1", "narration.capacity=1"))
    store_a, store_b = SegmentStore(str(output_a / "store")), SegmentStore(str(output_b / "store"))
    assert store_a.keys() == store_b.keys()
    for key in store_a.keys():
        assert np.array_equal(store_a.get(key).codes, store_b.get(key).codes)
    names = sorted(p.name for p in (output_a / "chapters").glob("*.flac"))
    assert names
    for name in names:
        assert np.array_equal(soundfile.read(output_a / "chapters" / name)[0], soundfile.read(output_b / "chapters" / name)[0])


def test_equal_capacity_in_one_actor_or_two_gives_the_same_codes_and_flac_bytes(book, voice, tmp_path, ray_local):
    """1 actor x 4 rows and 2 actors x 2 rows: the same 4 row slots, shared out differently."""
    from jobs.narrate import run

    outputs = {}
    for actors, rows in ((1, 4), (2, 2)):
        output = tmp_path / f"{actors}x{rows}" / "out"
        settings = [o for o in overrides(book, output, voice)
                    if not o.startswith(("cluster.num_actors", "narration.capacity"))]
        run(config(*settings, f"cluster.num_actors={actors}", f"narration.capacity={rows}"))
        outputs[actors, rows] = output
    one, two = outputs[1, 4], outputs[2, 2]
    store_one, store_two = SegmentStore(str(one / "store")), SegmentStore(str(two / "store"))
    assert store_one.keys() and store_one.keys() == store_two.keys()
    for key in store_one.keys():
        assert np.array_equal(store_one.get(key).codes, store_two.get(key).codes)
    names = sorted(p.name for p in (one / "chapters").glob("*.flac"))
    assert len(names) == 3 and names == sorted(p.name for p in (two / "chapters").glob("*.flac"))
    for name in names:
        assert (one / "chapters" / name).read_bytes() == (two / "chapters" / name).read_bytes()


def test_chapters_that_open_with_the_same_line_narrate(voice, tmp_path, ray_local):
    """Three chapters titled "Interlude": their first segments share one key, generated once."""
    from jobs.narrate import run

    path = tmp_path / "interludes.md"
    path.write_text("# Interludes\n\n## Interlude\n\nRain.\n\n## Interlude\n\nWind.\n\n## Interlude\n\nSnow.\n",
                    encoding="utf-8")
    output = tmp_path / "out"
    summary = run(config(*overrides(path, output, voice)))
    plan = pq.read_table(output / "plan.parquet").to_pylist()
    firsts = [row["key"] for row in plan if row["segment_index"] == 0]
    assert len(firsts) == 3 and len(set(firsts)) == 1
    assert summary["segments"] == len(plan) and (output / "index" / "book" / "book.parquet").exists()
    assert len(list((output / "chapters").glob("*.flac"))) == 3


@pytest.mark.parametrize("case", ["missing_voice", "unreadable_voice", "empty_book", "unknown_model", "output_not_writable"])
def test_bad_input_fails_before_any_model_loads(case, book, tmp_path):
    output = tmp_path / "out"
    args = [f"input={book}", f"output={output}", "model=tiny"]
    if case == "missing_voice":
        args.append(f"voice={tmp_path / 'nowhere.wav'}")
        expected = "nowhere.wav: no such file"
    elif case == "unreadable_voice":
        fake = tmp_path / "voice.wav"
        fake.write_text("this is not audio")
        args.append(f"voice={fake}")
        expected = "voice.wav: the voice file cannot be read"
    elif case == "empty_book":
        empty = tmp_path / "empty.txt"
        empty.write_text("")
        args[0] = f"input={empty}"
        expected = "empty.txt"
    elif case == "unknown_model":
        args[2] = "model=moss_tts_v9"
        expected = "valid choices: auto, moss_tts, moss_tts_v1_5, tiny"
    else:
        blocker = tmp_path / "a-file"
        blocker.write_text("x")
        output = blocker / "out"
        args[1] = f"output={output}"
        expected = "is a file, not a folder"
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert expected in result.stderr and "What to do:" in result.stderr
    assert "narrating" not in result.stderr  # no actor started, so no model was loaded
    assert not (output / "store").exists() and not (output / "index").exists()


def test_invalid_cluster_choice_lists_the_valid_ones(tmp_path):
    result = cli("cluster=moon", cwd=tmp_path)
    assert result.returncode != 0
    assert "cluster" in result.stderr and "local" in result.stderr and "ray" in result.stderr


def test_finish_job_refinishes_from_the_store_without_narrating(uninterrupted, book, voice, tmp_path):
    import shutil

    from jobs.finish import run as finish

    output = tmp_path / "copy"
    shutil.copytree(uninterrupted[0], output)
    stored = {p: p.stat().st_mtime_ns for p in (output / "store").rglob("*.safetensors")}
    result = finish(config("job=finish", *overrides(book, output, voice), "finish.loudness_preset=podcast",
                           "finish.lossy_format=opus"))
    assert {p: p.stat().st_mtime_ns for p in (output / "store").rglob("*.safetensors")} == stored
    chapters = pq.read_table(output / "index" / "chapters" / "chapters.parquet").to_pylist()
    assert len(chapters) == 3 and result["m4b"]
    for chapter in chapters:
        assert chapter["lossy_path"].endswith(".opus")
        assert abs(chapter["flac_lufs"] - (-16.0)) <= 0.5 and chapter["lossy_true_peak_dbtp"] <= -1.0
    segments = pq.read_table(output / "index" / "segments" / "segments.parquet").to_pylist()
    original = pq.read_table(uninterrupted[0] / "index" / "segments" / "segments.parquet").to_pylist()
    assert [s["key"] for s in segments] == [s["key"] for s in original]


def test_finish_job_refuses_an_unnarrated_book(book, voice, tmp_path, ray_local):
    from jobs.finish import run as finish

    from pipeline.errors import InputError

    with pytest.raises(InputError, match=r"segment\(s\) are not narrated yet. What to do: run job=narrate first"):
        finish(config("job=finish", *overrides(book, tmp_path / "fresh", voice)))
    assert not (tmp_path / "fresh" / "index").exists()


def test_a_sweep_writes_each_job_apart_and_shares_the_store(uninterrupted, book, voice, tmp_path):
    """`-m finish.loudness_preset=audiobook,podcast`: two outputs side by side, one store."""
    import shutil

    output = tmp_path / "sweep"
    shutil.copytree(uninterrupted[0] / "store", output / "store")
    stored = {p: p.stat().st_mtime_ns for p in (output / "store").rglob("*.safetensors")}
    result = cli("-m", "job=finish", *overrides(book, output, voice), "finish.loudness_preset=audiobook,podcast",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in output.iterdir() if p.name != "store")
    assert len(jobs) == 2
    for preset, target in (("audiobook", -18.0), ("podcast", -16.0)):
        [job] = [p for p in jobs if f"finish.loudness_preset={preset}" in p.name]
        chapters = pq.read_table(job / "index" / "chapters" / "chapters.parquet").to_pylist()
        assert len(chapters) == 3 and all(abs(c["flac_lufs"] - target) <= 0.5 for c in chapters)
        assert (job / chapters[0]["flac_path"]).is_file() and not (job / "store").exists()
    assert {p: p.stat().st_mtime_ns for p in (output / "store").rglob("*.safetensors")} == stored


def test_index_tables_load_with_datasets_and_duckdb(uninterrupted):
    import duckdb

    datasets = pytest.importorskip("datasets")
    output, summary = uninterrupted
    plan = pq.read_table(output / "plan.parquet").to_pylist()
    loaded = datasets.load_dataset("parquet", data_dir=str(output / "index" / "segments"), split="train")
    assert loaded.num_rows == len(plan)
    assert [(r["language"], r["paragraph_index"]) for r in loaded] == [(p["language"], p["paragraph_index"]) for p in plan]
    count = duckdb.connect().execute(
        f"SELECT count(*) FROM read_parquet('{output}/index/chapters/*.parquet') WHERE flac_true_peak_dbtp <= -1.0"
    ).fetchone()[0]
    assert count == 3


def test_m4b_chapters_match_the_index(uninterrupted):
    import json

    output, summary = uninterrupted
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_chapters", "-of", "json", summary["m4b"]],
                           capture_output=True, text=True, check=True)
    info = json.loads(probe.stdout)
    chapters = pq.read_table(output / "index" / "chapters" / "chapters.parquet").to_pylist()
    assert [c["tags"]["title"] for c in info["chapters"]] == [c["title"] for c in chapters]
    total = sum(c["num_samples"] for c in chapters) / 24000
    assert abs(float(info["format"]["duration"]) - total) < 0.1
    assert info["format"]["tags"]["title"] == "A Small Test Book"
