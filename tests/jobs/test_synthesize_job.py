"""job=synthesize end to end on a real local Ray (Ray Data actor pool) with the tiny checkpoint (CPU).

The voices are short recordings built here; the texts are written here too, so every count
below is known. The audio is noise (random weights) but every file, key, shard and card is real.
"""

import json
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
from pipeline.dataset.shards import METADATA_KEY
from pipeline.errors import InputError

pytestmark = pytest.mark.e2e  # real command, Ray and narration end to end: `make test-e2e`

register_resolvers()  # the ${stem:...} resolver the config uses
PROJECT_ROOT = Path(__file__).resolve().parents[2]
ROWS = 50
SHARD_SIZE = 20


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base=None):
        return compose(config_name="config", overrides=["job=synthesize", *overrides])


@pytest.fixture(scope="module")
def voices(tmp_path_factory) -> Path:
    """Three voices: 1.5 s of different tones with a little noise; one has a transcript beside it."""
    folder = tmp_path_factory.mktemp("voices")
    rng = np.random.default_rng(0)
    for name, hz in (("alto", 220.0), ("bass", 110.0), ("tenor", 330.0)):
        t = np.arange(int(1.5 * 24000)) / 24000
        wave = 0.3 * np.sin(2 * np.pi * hz * t) + 0.02 * rng.standard_normal(t.size)
        soundfile.write(folder / f"{name}.wav", wave.astype(np.float32), 24000)
    (folder / "alto.txt").write_text("A short line of speech.", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> Path:
    """50 good rows (ids u00..u49, a passed-through column) and three bad ones."""
    path = tmp_path_factory.mktemp("texts") / "texts.jsonl"
    lines = [{"id": f"u{i:02d}", "text": f"Line {i} of the test set.", "topic": f"t{i % 4}"} for i in range(ROWS)]
    lines.insert(10, {"id": "empty", "text": "   "})
    lines.insert(20, {"id": "stranger", "text": "Who am I?", "voice": "nobody"})
    lines.insert(30, {"id": "huge", "text": "word " * 2000})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def overrides(texts: Path, voices: Path, output: Path, actors: int = 2) -> list[str]:
    return [f"input={texts}", f"voices={voices}", f"output={output}", "model=tiny", f"job.shard_size={SHARD_SIZE}",
            "job.batch_rows=8", "narration.capacity=4", f"cluster.num_actors={actors}", "job.max_row_seconds=60"]


@pytest.fixture(scope="module")
def uninterrupted(texts, voices, ray_local, tmp_path_factory):
    from jobs.synthesize import run

    output = tmp_path_factory.mktemp("run") / "out"
    summary = run(config(*overrides(texts, voices, output)))
    return output, summary


def shard_files(output: Path) -> list[Path]:
    return sorted((output / "data").glob("*.parquet"))


def test_fifty_rows_three_voices_make_three_shards_that_datasets_loads(uninterrupted):
    import datasets

    output, summary = uninterrupted
    names = [p.name for p in shard_files(output)]
    assert names == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    assert [pq.ParquetFile(output / "data" / n).metadata.num_rows for n in names] == [20, 20, 10]
    assert summary["dataset_rows"] == ROWS and summary["generated"] == ROWS and summary["rejects"] == 3

    ds = datasets.load_dataset("parquet", data_dir=str(output / "data"), split="train")
    assert len(ds) == ROWS
    assert len(set(ds["id"])) == ROWS and sorted(ds["id"]) == [f"u{i:02d}" for i in range(ROWS)]
    assert set(ds["voice"]) == {"alto", "bass", "tenor"}
    assert ds["voice"][:4] == ["alto", "bass", "tenor", "alto"]  # round robin in input order
    assert ds["topic"][:5] == ["t0", "t1", "t2", "t3", "t0"]  # other input columns pass through
    row = ds[7]
    samples = row["audio"].get_all_samples()
    assert samples.sample_rate == 24000 and samples.data.shape[-1] > 0
    assert abs(samples.data.shape[-1] / 24000 - row["duration_s"]) < 1e-6
    assert row["text"] == "Line 7 of the test set." and row["normalized_text"] == "Line seven of the test set."
    assert row["language"] == "en" and row["sample_rate"] == 24000 and row["attempts"] >= 1
    assert row["model_revision"] and json.loads(row["decoding"])["audio"]["top_k"] == 25
    # the audio bytes are the stored FLAC: decodable by anything that reads FLAC
    raw = pq.read_table(shard_files(output)[0], columns=["audio"]).column("audio")[0].as_py()
    audio, rate = soundfile.read(__import__("io").BytesIO(raw["bytes"]))
    assert rate == 24000 and raw["path"].endswith(".flac") and audio.size > 0


def test_rejects_are_recorded_with_their_reasons(uninterrupted):
    output, _ = uninterrupted
    rejects = [json.loads(line) for line in (output / "rejects.jsonl").read_text().splitlines()]
    assert {(r["id"], r["reason"]) for r in rejects} == {("empty", "empty_text"), ("stranger", "unknown_voice"),
                                                         ("huge", "too_long")}
    assert all(r["place"].startswith("texts.jsonl:") and r["detail"] for r in rejects)
    assert "nobody" in next(r["detail"] for r in rejects if r["id"] == "stranger")


def test_dataset_card_gives_hours_per_voice_and_language_and_the_command(uninterrupted, texts):
    output, summary = uninterrupted
    card = (output / "README.md").read_text()
    assert f"{ROWS} utterances" in card and "| alto | 17 |" in card and "| tenor | 16 |" in card
    assert "| en | 50 |" in card and "rejected input rows: 3" in card
    assert f"input={texts}" in card and "job=synthesize" in card
    assert "path: data/train-*.parquet" in card


def test_killed_run_resumes_to_byte_identical_shards(uninterrupted, texts, voices, tmp_path):
    from jobs.synthesize import run

    output_a, _ = uninterrupted
    output_b = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "RAY_AUTH_MODE": "disabled"}
    process = subprocess.Popen([sys.executable, "-m", "pipeline.run", "job=synthesize",
                                *overrides(texts, voices, output_b, actors=1)],
                               cwd=PROJECT_ROOT, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = output_b / "store" / "results"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if results.is_dir() and len(list(results.glob("*/*.parquet"))) >= 25:
            break
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)  # the driver, its embedded Ray and the actors
    process.wait()
    stored = len(list(results.glob("*/*.parquet")))
    # whatever the kill left: every shard that looks complete is complete (and shard 2 cannot be)
    present = shard_files(output_b)
    assert (output_b / "data" / "train-00002-of-00003.parquet") not in present
    for shard in present:
        assert pq.ParquetFile(shard).metadata.num_rows == SHARD_SIZE
        assert METADATA_KEY in pq.read_schema(shard).metadata

    summary = run(config(*overrides(texts, voices, output_b, actors=2)))  # another schedule, too
    assert summary["reused"] >= stored >= 25
    assert summary["generated"] + summary["reused"] == ROWS - SHARD_SIZE * len(present)
    assert [p.name for p in shard_files(output_b)] == [p.name for p in shard_files(output_a)]
    for a, b in zip(shard_files(output_a), shard_files(output_b)):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs after the resumed run"
    assert not list((output_b / "data").glob(".*"))

    again = run(config(*overrides(texts, voices, output_b, actors=1)))  # nothing left to do
    assert again["rows"] == 0 and again["shards_written"] == 0 and again["dataset_rows"] == ROWS


def test_plain_text_input_one_utterance_a_line(voices, ray_local, tmp_path):
    from jobs.synthesize import run

    path = tmp_path / "lines.txt"
    lines = ["The first line.", "", "A second line, after a blank one.", "Third and last."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "out"
    summary = run(config(f"input={path}", f"voices={voices}", f"output={output}", "model=tiny", "job.assignment=random",
                         "job.webdataset=true", "job.include_codes=true", "narration.capacity=4", "cluster.num_actors=1"))
    assert summary["dataset_rows"] == 3 and summary["shards"] == 1
    table = pq.read_table(output / "data" / "train-00000-of-00001.parquet")
    assert table.column("text").to_pylist() == [line for line in lines if line]
    ids = table.column("id").to_pylist()
    assert len(set(ids)) == 3 and all(len(i) == 16 for i in ids)  # content hashes
    codes = table.column("codes").to_pylist()
    assert all(len(c) > 0 and len(c[0]) == 32 for c in codes)
    import tarfile

    with tarfile.open(output / "webdataset" / "train-00000-of-00001.tar") as tar:
        names = tar.getnames()
    assert names == [f"{i}.{suffix}" for i in ids for suffix in ("flac", "json")]


@pytest.mark.parametrize("case", ["missing_input", "empty_voices", "bad_type", "bad_assignment"])
def test_bad_input_fails_before_any_model_loads(case, voices, texts, tmp_path):
    from jobs.synthesize import prepare

    empty = tmp_path / "no-voices"
    empty.mkdir()
    args = {"input": str(texts), "voices": str(voices)}
    extra = []
    if case == "missing_input":
        args["input"] = str(tmp_path / "nothing.jsonl")
    elif case == "empty_voices":
        args["voices"] = str(empty)
    elif case == "bad_type":
        (tmp_path / "texts.xlsx").write_bytes(b"x")
        args["input"] = str(tmp_path / "texts.xlsx")
    else:
        extra = ["job.assignment=shuffle"]
    with pytest.raises(InputError) as error:
        prepare(config(*(f"{k}={v}" for k, v in args.items()), f"output={tmp_path / 'out'}", "model=tiny", *extra))
    message = str(error.value)
    assert "What to do" in message
    assert not (tmp_path / "out").exists()  # nothing written


def test_command_exits_2_naming_the_voices_folder(texts, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "RAY_AUTH_MODE": "disabled"}
    missing = tmp_path / "voices-here"
    result = subprocess.run([sys.executable, "-m", "pipeline.run", "job=synthesize", f"input={texts}",
                             f"voices={missing}", f"output={tmp_path / 'out'}", "model=tiny"],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert str(missing) in result.stderr and "voices folder does not exist" in result.stderr


def test_without_input_each_job_reads_its_bundled_sample():
    """`job=synthesize` with no input= reads the bundled sample texts; the book jobs the sample book."""
    from pipeline.dataset.rows import read_rows

    cfg = config()
    assert cfg.input == "pipeline/samples/sample_texts.jsonl"
    rows = list(read_rows(PROJECT_ROOT / cfg.input))
    assert len(rows) >= 5 and all(row.fields and row.fields["text"].strip() for row in rows)
    assert len({row.fields["id"] for row in rows}) == len(rows)
    assert config("input=texts.jsonl").input == "texts.jsonl"
    for job in ("narrate", "plan", "finish"):
        with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base=None):
            assert compose(config_name="config", overrides=[f"job={job}"]).input == "pipeline/samples/sample_book.md"
