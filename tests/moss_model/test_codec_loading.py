"""The tiny codec checkpoint in the released folder format, loaded from a folder and from a hub id,
and every strict-loading error with a message that names what is wrong."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from moss_model.checkpoint import INDEX_FILE, SINGLE_FILE, CheckpointError
from moss_model.codec import CodecConfigError, MossAudioCodec, load_codec, write_tiny_codec


@pytest.fixture(scope="module")
def tiny_codec_dir(tmp_path_factory):
    return write_tiny_codec(tmp_path_factory.mktemp("codec") / "moss-audio-tokenizer-tiny", seed=0)


@pytest.fixture()
def copy(tiny_codec_dir, tmp_path):
    return shutil.copytree(tiny_codec_dir, tmp_path / "codec")


def test_tiny_folder_has_the_released_layout_and_loads(tiny_codec_dir):
    assert sorted(p.name for p in tiny_codec_dir.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tiny_codec_dir / "config.json").read_text())
    assert config["model_type"] == "speech_tokenizer"
    assert config["sampling_rate"] == 24000 and config["downsample_rate"] == 1920
    assert [s["module_type"] for s in config["encoder_kwargs"]][:3] == ["PatchedPretransform", "Transformer", "PatchedPretransform"]
    assert config["quantizer_kwargs"]["num_quantizers"] == 32 and config["quantizer_kwargs"]["codebook_size"] == 1024
    tensors = load_file(tiny_codec_dir / SINGLE_FILE)
    assert "quantizer.quantizers.31.in_proj.parametrizations.weight.original1" in tensors
    assert "decoder.6.transformer.layers.0.self_attn.in_projs.0.weight" in tensors
    codec = load_codec(tiny_codec_dir)
    assert isinstance(codec, MossAudioCodec) and not codec.training
    assert codec.config.frame_rate == 12.5
    for key, value in codec.state_dict().items():
        assert torch.equal(value, tensors[key]), key
    # same seed, same checkpoint; another seed, other weights
    again = load_file(write_tiny_codec(tiny_codec_dir.parent / "again", seed=0) / SINGLE_FILE)
    other = load_file(write_tiny_codec(tiny_codec_dir.parent / "other", seed=1) / SINGLE_FILE)
    assert all(torch.equal(again[k], tensors[k]) for k in tensors)
    assert not torch.equal(other["quantizer.quantizers.0.codebook.weight"], tensors["quantizer.quantizers.0.codebook.weight"])


def test_loaded_codec_round_trips_audio_shapes(tiny_codec_dir):
    codec = load_codec(tiny_codec_dir, dtype=torch.bfloat16)
    assert codec.dtype == torch.bfloat16
    codes, lengths = codec.encode(0.3 * torch.randn(1, 5 * 1920))
    audio, audio_lengths = codec.decode(codes, lengths)
    assert codes.shape == (1, 32, 5) and audio.shape == (1, 5 * 1920) and audio.dtype == torch.float32
    assert torch.isfinite(audio).all()


def test_sharded_checkpoint_loads_and_a_missing_shard_is_named(tiny_codec_dir, tmp_path):
    codec = load_codec(tiny_codec_dir)
    folder = codec.save_pretrained(tmp_path / "sharded", max_shard_bytes=400_000)
    index = json.loads((folder / INDEX_FILE).read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    reloaded = load_codec(folder)
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), codec.state_dict().values()))
    (folder / shards[1]).unlink()
    with pytest.raises(CheckpointError, match=f"shard\\(s\\) {shards[1]} listed in {INDEX_FILE} are missing"):
        load_codec(folder)


def _rewrite(folder, change):
    tensors = load_file(folder / SINGLE_FILE)
    change(tensors)
    save_file(tensors, folder / SINGLE_FILE)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda t: t.pop("quantizer.quantizers.7.codebook.weight"),
            r"1 missing key\(s\): quantizer\.quantizers\.7\.codebook\.weight",
        ),
        (
            lambda t: t.update({"quantizer.quantizers.7.in_proj.weight_g": torch.zeros(8, 1, 1)}),
            r"1 unexpected key\(s\): quantizer\.quantizers\.7\.in_proj\.weight_g",
        ),
        (
            lambda t: t.update({"encoder.1.input_proj.weight": torch.zeros(32, 120)}),
            r"shape mismatch.*encoder\.1\.input_proj\.weight: file \[32, 120\] vs model \[32, 240\]",
        ),
    ],
    ids=["missing-key", "unexpected-key", "wrong-shape"],
)
def test_strict_loading_errors_name_the_problem(copy, change, message):
    _rewrite(copy, change)
    with pytest.raises(CheckpointError, match=message):
        load_codec(copy)


def test_wrong_folder_errors(tmp_path, copy):
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_codec(tmp_path)  # a folder without a checkpoint
    with pytest.raises(CheckpointError, match="neither an existing folder nor a hub id"):
        load_codec(tmp_path / "no" / "such" / "codec")
    (copy / SINGLE_FILE).unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_codec(copy)


def test_a_delay_model_folder_is_not_a_codec(copy):
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({"model_type": "moss_tts_delay", "n_vq": 32}))
    with pytest.raises(CodecConfigError, match=r"model_type 'moss_tts_delay' is not an audio codec config.*codec folder"):
        load_codec(copy)
    config["quantizer_kwargs"]["input_dim"] = 33
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CodecConfigError, match=r"config.json: the encoder ends with width 32 but quantizer_kwargs.input_dim is 33"):
        load_codec(copy)
    (copy / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        load_codec(copy)


def test_hub_id_is_read_from_the_offline_cache(tiny_codec_dir, tmp_path, monkeypatch):
    # No network here: a real huggingface_hub cache layout, read in offline mode.
    cache = tmp_path / "hub"
    repo = cache / "models--tiny-org--moss-audio-tokenizer-tiny"
    snapshot = repo / "snapshots" / ("b" * 40)
    shutil.copytree(tiny_codec_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("b" * 40)
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    codec = load_codec("tiny-org/moss-audio-tokenizer-tiny")
    reference = load_codec(tiny_codec_dir)
    assert all(torch.equal(a, b) for a, b in zip(codec.state_dict().values(), reference.state_dict().values()))
    with pytest.raises(CheckpointError, match="could not get 'tiny-org/no-codec-here'"):
        load_codec("tiny-org/no-codec-here")
