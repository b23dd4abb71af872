"""Loading from folders and the hub cache, save/load round trips, and every loading error."""

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from moss_model.checkpoint import CheckpointError, INDEX_FILE, SINGLE_FILE, load_model, resolve_checkpoint, save_weights
from moss_model.config import MossTTSConfig
from moss_model.loading import load_tts
from moss_model.model import MossTTSDelayModel


def copy_checkpoint(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_save_then_load_is_bit_identical(tiny_model_dir, tiny_model, tmp_path):
    save_weights(tiny_model.model, tmp_path, max_shard_bytes=200_000)  # forces several shards
    assert (tmp_path / INDEX_FILE).is_file()
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "config.json")
    reloaded = load_model(lambda: MossTTSDelayModel(tiny_model.config), tmp_path)
    original = tiny_model.model.checkpoint_tensors()
    for key, tensor in reloaded.checkpoint_tensors().items():
        assert torch.equal(tensor, original[key]), key
    # and the files hold exactly the released key names
    on_disk = load_file(tiny_model_dir / SINGLE_FILE)
    assert "lm_heads.0.weight" in on_disk and "emb_ext.31.weight" in on_disk and "lm_heads.32.weight" in on_disk
    assert "language_model.layers.1.self_attn.q_norm.weight" in on_disk
    assert torch.equal(on_disk["emb_ext.3.weight"], original["emb_ext.3.weight"])


def test_model_is_built_on_meta_without_random_init(tiny_model_dir):
    devices = []

    def build():
        devices.append(torch.empty(1).device.type)
        return MossTTSDelayModel(MossTTSConfig.from_folder(tiny_model_dir))

    model = load_model(build, tiny_model_dir, dtype=torch.bfloat16)
    assert devices == ["meta"]
    assert model.text_head.dtype == torch.bfloat16 and model.text_head.device.type == "cpu"
    assert model.language_model.inv_freq.device.type == "cpu"  # non-persistent buffers recomputed


def _rewrite(folder, change):
    tensors = load_file(folder / SINGLE_FILE)
    change(tensors)
    save_file(tensors, folder / SINGLE_FILE)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.pop("lm_heads.5.weight"), r"1 missing key\(s\): lm_heads.5.weight"),
        (lambda t: t.update({"lm_heads.99.weight": torch.zeros(2)}), r"unexpected key\(s\): lm_heads.99.weight"),
        (lambda t: t.update({"emb_ext.0.weight": torch.zeros(3, 3)}), r"shape mismatch.*emb_ext.0.weight: file \[3, 3\]"),
    ],
)
def test_key_and_shape_errors_name_the_key(tiny_model_dir, tmp_path, change, message):
    folder = copy_checkpoint(tiny_model_dir, tmp_path / "ckpt")
    _rewrite(folder, change)
    with pytest.raises(CheckpointError, match=message):
        load_tts(folder)


def test_missing_shard_is_named(tiny_model, tiny_model_dir, tmp_path):
    folder = tmp_path / "sharded"
    save_weights(tiny_model.model, folder, max_shard_bytes=200_000)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, folder / name)
    shards = sorted(folder.glob("model-*.safetensors"))
    shards[1].unlink()
    with pytest.raises(CheckpointError, match=f"shard\\(s\\) {shards[1].name} .* missing"):
        load_tts(folder)


def test_wrong_folder_and_file_and_name(tmp_path, tiny_model_dir):
    with pytest.raises(CheckpointError, match="has no config.json"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="is a file"):
        resolve_checkpoint(tiny_model_dir / "config.json")
    with pytest.raises(CheckpointError, match="neither an existing folder nor a hub id"):
        resolve_checkpoint(tmp_path / "does-not-exist")
    empty = tmp_path / "no-weights"
    empty.mkdir()
    shutil.copy(tiny_model_dir / "config.json", empty / "config.json")
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_tts(empty)


def test_hub_id_is_read_from_the_offline_cache(tiny_model_dir, tmp_path, monkeypatch):
    # The hub itself is out of reach here: a real huggingface_hub cache layout, read in offline mode.
    cache = tmp_path / "hub"
    snapshot = cache / "models--tiny-org--moss-tts-tiny" / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_model_dir, snapshot)
    (cache / "models--tiny-org--moss-tts-tiny" / "refs").mkdir()
    (cache / "models--tiny-org--moss-tts-tiny" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    tts = load_tts("tiny-org/moss-tts-tiny")
    assert tts.folder == snapshot
    with pytest.raises(CheckpointError, match="could not get 'tiny-org/not-there'.*pass the local folder"):
        load_tts("tiny-org/not-there")


def test_fingerprint_changes_with_weights(tiny_model_dir, tmp_path):
    from moss_model.tiny import write_tiny_model

    other = write_tiny_model(tmp_path / "other", seed=1)
    assert load_tts(tiny_model_dir).revision != load_tts(other).revision
    assert load_tts(tiny_model_dir).revision == load_tts(tiny_model_dir).revision
