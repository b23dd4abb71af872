"""Dataset synthesis stages without a model: reading rows, voices, preparing work items, the
manifest, shards and the card (real files throughout; the audio is a tone written here)."""

import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile

from pipeline.dataset import card, manifest, shards
from pipeline.dataset.prepare import PrepareOptions, Preparer, Reject, WorkItem, prepare_rows
from pipeline.dataset.results import ResultStore, Utterance
from pipeline.dataset.rows import InputRow, check_readable, input_files, read_rows
from pipeline.dataset.synth import flac_bytes
from pipeline.dataset.voices import assign_voice, load_voices
from pipeline.errors import InputError
from pipeline.text.keys import KeyInputs

INPUTS = KeyInputs("", "tiny", "rev", {"audio": {"temperature": 1.7}}, 0)


def tone(path, seconds=1.5, hz=220.0):
    t = np.arange(int(seconds * 24000)) / 24000
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 24000)
    return path


@pytest.fixture
def voice_folder(tmp_path):
    folder = tmp_path / "voices"
    folder.mkdir()
    tone(folder / "anna.wav")
    tone(folder / "ben.wav", hz=120.0)
    tone(folder / "cleo.flac", hz=300.0)
    (folder / "anna.txt").write_text("Hello from Anna.\n", encoding="utf-8")
    (folder / "transcripts.tsv").write_text("file\ttranscript\nben.wav\tBen speaks here.\n", encoding="utf-8")
    return folder


# --- rows ---------------------------------------------------------------------------------------


def test_every_input_format_streams_rows_with_their_places(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "one", "id": "x"}\n\nnot json\n[1, 2]\n', encoding="utf-8")
    (tmp_path / "b.csv").write_text("id,text,speaker\n1,two,s\n2,\"three, with a comma\",\n", encoding="utf-8")
    (tmp_path / "c.tsv").write_text("text\tvoice\nfour\tanna\n", encoding="utf-8")
    pq.write_table(pa.table({"text": ["five", None], "n": [1, 2]}), tmp_path / "d.parquet")
    (tmp_path / "e.txt").write_text("\ufeffsix\n\n  seven  \n", encoding="utf-8")
    (tmp_path / "ignored.md").write_text("# not an input\n", encoding="utf-8")
    rows = list(read_rows(tmp_path))
    assert [r.place for r in rows] == ["a.jsonl:1", "a.jsonl:3", "a.jsonl:4", "b.csv:2", "b.csv:3", "c.tsv:2",
                                       "d.parquet:row 1", "d.parquet:row 2", "e.txt:1", "e.txt:3"]
    assert rows[0].fields == {"text": "one", "id": "x"}
    assert rows[1].fields is None and "not valid JSON" in rows[1].problem
    assert rows[2].fields is None and "object" in rows[2].problem
    assert rows[3].fields == {"id": "1", "text": "two", "speaker": "s"}
    assert rows[4].fields == {"id": "2", "text": "three, with a comma"}
    assert rows[5].fields == {"text": "four", "voice": "anna"}
    assert rows[6].fields == {"text": "five", "n": 1} and rows[7].fields == {"n": 2}
    assert [r.fields["text"] for r in rows[8:]] == ["six", "seven"]


def test_unreadable_inputs_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        input_files(tmp_path / "missing.jsonl")
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(InputError, match="unsupported input type '.docx'"):
        input_files(tmp_path / "x.docx")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no input file"):
        input_files(empty)
    (tmp_path / "n.csv").write_text("id,words\n1,hello\n", encoding="utf-8")
    with pytest.raises(InputError, match="no 'text' column"):
        check_readable([tmp_path / "n.csv"])
    (tmp_path / "gb.txt").write_bytes("你好".encode("gb18030"))
    with pytest.raises(InputError, match="not UTF-8"):
        check_readable([tmp_path / "gb.txt"])


# --- voices -------------------------------------------------------------------------------------


def test_voice_folder_finds_transcripts_beside_and_in_the_table(voice_folder):
    voices = load_voices(str(voice_folder))
    assert sorted(voices) == ["anna", "ben", "cleo"]
    assert voices["anna"].spec.text == "Hello from Anna."
    assert voices["ben"].spec.text == "Ben speaks here."
    assert voices["cleo"].spec.text is None
    assert len({v.spec.voice_id for v in voices.values()}) == 3


def test_voice_manifest_and_its_errors(voice_folder, tmp_path):
    listing = tmp_path / "voices.jsonl"
    listing.write_text(json.dumps({"name": "narrator", "path": "voices/anna.wav", "text": "Hi."}) + "\n"
                       + json.dumps({"path": "voices/ben.wav"}) + "\n", encoding="utf-8")
    voices = load_voices(str(listing))
    assert sorted(voices) == ["ben", "narrator"] and voices["narrator"].spec.text == "Hi."
    listing.write_text(json.dumps({"name": "x", "path": "voices/none.wav"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="none.wav"):
        load_voices(str(listing))
    tone(voice_folder / "short.wav", seconds=0.3)
    with pytest.raises(InputError, match="short.wav.*only 0.30 s"):
        load_voices(str(voice_folder))
    with pytest.raises(InputError, match="voices folder does not exist"):
        load_voices(str(tmp_path / "nowhere"))


def test_voice_assignment_is_round_robin_or_seeded_by_id():
    names = ["a", "b", "c"]
    assert [assign_voice(f"r{i}", i, names, "round_robin", 0) for i in range(5)] == ["a", "b", "c", "a", "b"]
    picks = [assign_voice(f"r{i}", i, names, "random", 7) for i in range(300)]
    assert picks == [assign_voice(f"r{i}", 999, names, "random", 7) for i in range(300)]  # position plays no part
    assert all(60 < picks.count(n) < 140 for n in names)
    assert picks != [assign_voice(f"r{i}", i, names, "random", 8) for i in range(300)]


# --- prepare ------------------------------------------------------------------------------------


@pytest.fixture
def preparer(voice_folder):
    return Preparer(load_voices(str(voice_folder)), INPUTS, PrepareOptions(target_seconds=4.0, max_seconds=8.0,
                                                                          max_row_seconds=40.0))


def test_long_text_becomes_parts_of_one_id(preparer):
    text = " ".join(f"Sentence number {i} is here." for i in range(1, 7))
    items, reject = preparer.prepare(InputRow("t:1", {"id": "long", "text": text, "voice": "ben", "mood": "calm"}))
    assert reject is None and len(items) > 1
    assert [i.id for i in items] == [f"long-{k:03d}" for k in range(len(items))]
    assert {i.source_id for i in items} == {"long"} and all(i.parts == len(items) for i in items)
    assert " ".join(i.text for i in items) == text
    assert items[0].normalized_text.startswith("Sentence number one is here.")
    assert len({i.key for i in items}) == len(items) and all(i.voice == "ben" for i in items)
    assert json.loads(items[0].extra) == {"mood": "calm"}


def test_rejects_and_ids(preparer):
    def prepare(fields):
        return preparer.prepare(InputRow("t:9", fields))

    assert prepare({"text": ""})[1].reason == "empty_text"
    assert prepare({"text": "...!"})[1].reason == "empty_text"
    unknown = prepare({"text": "Hi.", "voice": "zed"})[1]
    assert unknown.reason == "unknown_voice" and "anna, ben, cleo" in unknown.detail
    assert prepare({"text": "Hello there. " * 60})[1].reason == "too_long"
    assert prepare({"text": "Hi.", "duration_s": "soon"})[1].reason == "bad_duration"
    items, _ = prepare({"text": "Plain words."})
    assert len(items[0].id) == 16  # a content hash
    assert prepare({"text": "Plain words."})[1].reason == "duplicate_id"
    assert InputRow("t:1", None, "bad").fields is None and preparer.prepare(InputRow("t:1", None, "x"))[1].reason == "bad_row"


def test_duration_and_voice_and_loudness_shape_the_key(voice_folder):
    voices = load_voices(str(voice_folder))

    def item(options=PrepareOptions(), **fields):
        return Preparer(voices, INPUTS, options).prepare(InputRow("t:1", {"id": "a", "text": "Hello there.", **fields}))[0][0]

    plain = item(voice="anna")
    timed = item(voice="anna", duration_s=2.0)
    assert timed.tokens == 25 and timed.est_frames == 25 and plain.tokens is None
    assert len({plain.key, timed.key, item(voice="ben").key, item(PrepareOptions(loudness_lufs=-23.0), voice="anna").key}) == 4
    assert item(voice="anna").key == plain.key
    assert item(PrepareOptions(language="de"), voice="anna").language == "de"
    assert item(voice="anna", language="fr").language == "fr"


# --- manifest, shards, card ---------------------------------------------------------------------


def fake_result(store: ResultStore, key: str, seconds: float, flags=()) -> None:
    t = np.arange(int(seconds * 24000)) / 24000
    audio = (0.2 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    codes = np.arange(10 * 32, dtype="<i2").reshape(10, 32)
    store.put(Utterance(key=key, flac=flac_bytes(audio, 24000), sample_rate=24000, num_samples=audio.size, seed=5,
                        attempts=1 + len(flags), flags=list(flags), frames=10, codes=codes.tobytes(), n_vq=32))


def test_manifest_shards_and_card(preparer, tmp_path):
    texts = tmp_path / "t.jsonl"
    texts.write_text("".join(json.dumps({"id": f"r{i}", "text": f"Row {i}.", "tag": i}) + "\n" for i in range(7))
                     + json.dumps({"id": "r9", "text": ""}) + "\n", encoding="utf-8")
    output = tmp_path / "out"
    output.mkdir()
    info = manifest.write_manifest(prepare_rows(read_rows(texts), preparer), output, shard_size=3)
    assert (info.rows, info.shard_rows, info.rejects, info.extra_columns) == (7, [3, 3, 1], 1, ["tag"])
    assert manifest.read_info(output) == info
    assert [i["id"] for i in manifest.shard_items(output, 1)] == ["r3", "r4", "r5"]
    assert json.loads((output / "rejects.jsonl").read_text())["reason"] == "empty_text"

    store = ResultStore(str(tmp_path / "store"))
    for n, item in enumerate(manifest.shard_items(output, 1)):
        fake_result(store, item["key"], 0.5 + n, flags=("frame_limit",) if n == 0 else ())
    options = shards.ShardOptions("tiny", "rev", "{}", 24000, include_codes=True, webdataset=True)
    written = shards.write_shard(output, 1, info, str(store.root), options)
    path = output / "data" / "train-00001-of-00003.parquet"
    assert written == {"shard": 1, "path": str(path), "rows": 3}
    assert [p.name for p in (output / "data").iterdir()] == [path.name]  # no partial left behind
    assert shards.shard_digest(path) == info.shard_digests[1]
    table = pq.read_table(path)
    assert table.column("id").to_pylist() == ["r3", "r4", "r5"] and table.column("tag").to_pylist() == ["3", "4", "5"]
    assert table.column("codes")[0].as_py()[1][:2] == [32, 33]
    audio, rate = soundfile.read(io.BytesIO(table.column("audio")[1].as_py()["bytes"]))
    assert rate == 24000 and abs(audio.size / 24000 - 1.5) < 1e-6
    with tarfile.open(output / "webdataset" / "train-00001-of-00003.tar") as tar:
        assert tar.getnames() == ["r3.flac", "r3.json", "r4.flac", "r4.json", "r5.flac", "r5.json"]
        assert json.loads(tar.extractfile("r4.json").read())["id"] == "r4"

    totals = card.totals(shards.shard_summary_columns(output))
    assert totals.rows == 3 and abs(totals.seconds - 4.5) < 1e-6 and totals.flags == {"frame_limit": 1}
    assert totals.by_voice and totals.retried_rows == 1
    readme = card.write_card(output, totals, info, "python -m pipeline.run job=synthesize", "tiny", "rev", True, "{}")
    text = readme.read_text()
    assert "frame_limit 1" in text and "empty_text 1" in text and "random weights" in text


def test_hand_written_features_load_as_an_audio_dataset(tmp_path):
    import datasets

    output = tmp_path / "out"
    output.mkdir()
    items = [WorkItem(id=f"r{i}", source_id=f"r{i}", part=0, parts=1, text="Hi.", normalized_text="Hi.", language="en",
                      voice="anna", voice_id="v", key=f"k{i}", est_frames=5, tokens=None, place="t:1",
                      extra=json.dumps({"tag": i})) for i in range(2)]
    info = manifest.write_manifest(iter([*items, Reject("t:3", None, "bad_row", "x")]), output, shard_size=5)
    store = ResultStore(str(tmp_path / "store"))
    for item in items:
        fake_result(store, item.key, 1.0)
    shards.write_shard(output, 0, info, store.root, shards.ShardOptions("tiny", "rev", "{}", 24000, include_codes=True))
    ds = datasets.load_dataset("parquet", data_dir=str(output / "data"), split="train")
    assert isinstance(ds.features["audio"], datasets.Audio) and ds.features["audio"].sampling_rate == 24000
    assert ds[1]["tag"] == "1" and len(ds[0]["codes"]) == 10 and ds[0]["flags"] == []
    samples = ds[0]["audio"].get_all_samples()
    assert samples.sample_rate == 24000 and samples.data.shape[-1] == 24000
