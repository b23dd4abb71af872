import json

import pytest

from moss_model.checkpoint import CheckpointError
from moss_model.config import ConfigError, MossTTSConfig

RELEASED_LIKE = {
    "model_type": "moss_tts_delay",
    "language_config": {
        "vocab_size": 155648, "hidden_size": 4096, "num_hidden_layers": 36, "num_attention_heads": 32,
        "num_key_value_heads": 8, "intermediate_size": 12288, "head_dim": 128, "rope_theta": 1000000,
        "rms_norm_eps": 1e-6, "model_type": "qwen3",
    },
    "n_vq": 32, "audio_vocab_size": 1024, "audio_pad_code": 1024, "sampling_rate": 24000,
    "pad_token_id": 151643, "im_start_token_id": 151644, "im_end_token_id": 151645,
    "audio_start_token_id": 151652, "audio_end_token_id": 151653, "audio_user_slot_token_id": 151654,
    "audio_assistant_gen_slot_token_id": 151656, "audio_assistant_delay_slot_token_id": 151662,
    "torch_dtype": "bfloat16",
}


def test_reads_released_layout():
    config = MossTTSConfig.from_dict(RELEASED_LIKE)
    assert config.backbone.hidden_size == 4096 and config.backbone.num_key_value_heads == 8
    assert config.audio_assistant_delay_slot_token_id == 151662
    assert config.extra == {"torch_dtype": "bfloat16"}
    again = MossTTSConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_rope_theta_nested_in_rope_parameters():
    data = json.loads(json.dumps(RELEASED_LIKE))
    del data["language_config"]["rope_theta"]
    data["language_config"]["rope_parameters"] = {"rope_type": "default", "rope_theta": 5000.0}
    assert MossTTSConfig.from_dict(data).backbone.rope_theta == 5000.0


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(model_type="llama"), "model_type is 'llama'"),
        (lambda d: d.pop("language_config"), "language_config"),
        (lambda d: d["language_config"].pop("hidden_size"), "lacks hidden_size"),
        (lambda d: d["language_config"].update(num_key_value_heads=5), "multiple of num_key_value_heads"),
        (lambda d: d.update(n_vq="32"), "n_vq must be an integer"),
        (lambda d: d.update(audio_end_token_id=999999), "outside the text vocabulary"),
        (lambda d: d.update(audio_end_token_id=151652), "must be distinct"),
        (lambda d: d.update(audio_pad_code=2000), "audio_pad_code"),
    ],
)
def test_bad_values_are_named(change, message):
    data = json.loads(json.dumps(RELEASED_LIKE))
    change(data)
    with pytest.raises(ConfigError, match=message):
        MossTTSConfig.from_dict(data, "x/config.json")


def test_missing_config_file(tmp_path):
    with pytest.raises(CheckpointError, match="config.json is missing"):
        MossTTSConfig.from_folder(tmp_path)
