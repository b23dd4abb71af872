"""Tiny random-weight checkpoints in the released folder format, for tests, smoke runs and benchmarks.

    python -m moss_model.tiny OUT_DIR            # OUT_DIR/moss-tts-tiny and OUT_DIR/codec-tiny

The model folder holds config.json, model.safetensors, a small byte-level BPE tokenizer with the
special tokens at the ids config.json names, and processor_config.json naming the codec folder,
so the very same loaders read it as a released checkpoint.

The weights are random, plus one deliberate structure: hidden channel 0 carries a constant,
and the text head reads it as a per-token bias. That makes a random model walk the text state
machine the way the real one does (enter audio, emit frames, close the block, stop) instead of
babbling text forever. The audio it produces is noise.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from moss_model.checkpoint import CONFIG_FILE, save_weights
from moss_model.config import BackboneConfig, MossTTSConfig
from moss_model.model import MossTTSDelayModel

PROCESSOR_CONFIG_FILE = "processor_config.json"
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|audio_start|>",
    "<|audio_end|>",
    "<|audio_user_slot|>",
    "<|audio_assistant_gen_slot|>",
    "<|audio_assistant_delay_slot|>",
]
# The Qwen chat layout (no system message), as the released tokenizer applies it.
CHAT_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
CORPUS = [
    "Call me the narrator. Some years ago, never mind how long precisely, I read a book aloud.",
    "The quick brown fox jumps over the lazy dog; 1234567890, and then some more text!",
    "Chapter one. It was a bright cold day in April, and the clocks were striking thirteen.",
    "<user_inst>\n- Reference(s):\nNone\n- Instruction:\nNone\n- Tokens:\nNone\n- Quality:\nNone\n"
    "- Sound Event:\nNone\n- Ambient Sound:\nNone\n- Language:\nNone\n- Text:\n</user_inst>",
    "user\nassistant\n[S1]:\n[S2]:\n",
    "亲爱的你，你好呀。今天，我想用最认真、最温柔的声音，对你说一些重要的话。",
    "从前有座山，山里有座庙。太阳系八大行星之一。ni3 hao3 /həˈloʊ/ [pause 1.5s]",
]


def tiny_config(text_vocab: int | None = None, hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                n_vq: int = 32, special_ids: dict[str, int] | None = None) -> MossTTSConfig:
    """A small delay-model config; token ids come from the tiny tokenizer unless given."""
    ids = special_ids or {}
    vocab = text_vocab or 1024
    backbone = BackboneConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=hidden * 2,
        head_dim=hidden // heads,
        max_position_embeddings=32768,
    )
    return MossTTSConfig(
        backbone=backbone,
        n_vq=n_vq,
        pad_token_id=ids.get("<|endoftext|>", 151643 % vocab),
        im_start_token_id=ids.get("<|im_start|>", 151644 % vocab),
        im_end_token_id=ids.get("<|im_end|>", 151645 % vocab),
        audio_start_token_id=ids.get("<|audio_start|>", 151652 % vocab),
        audio_end_token_id=ids.get("<|audio_end|>", 151653 % vocab),
        audio_user_slot_token_id=ids.get("<|audio_user_slot|>", 151654 % vocab),
        audio_assistant_gen_slot_token_id=ids.get("<|audio_assistant_gen_slot|>", 151656 % vocab),
        audio_assistant_delay_slot_token_id=ids.get("<|audio_assistant_delay_slot|>", 151662 % vocab),
    )


def build_tokenizer(vocab_size: int = 600):
    """A byte-level BPE in the Qwen2 style, with the chat and audio special tokens appended."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer=trainer)
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    return tokenizer


def write_tokenizer(tokenizer, folder: Path) -> dict[str, int]:
    tokenizer.save(str(folder / "tokenizer.json"))
    settings = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 131072,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    return {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}


def shape_text_head(model: MossTTSDelayModel, bias: dict[int, float], carrier: float = 8.0) -> None:
    """Give the text head a per-token bias through a constant hidden channel (see module doc)."""
    with torch.no_grad():
        model.language_model.embed_tokens.weight[:, 0] = carrier
        for layer in model.language_model.decoder_layers():
            layer.self_attn.o_proj.weight[0] = 0.0
            layer.mlp.down_proj.weight[0] = 0.0
        model.text_head[:, 0] = -0.5
        for token_id, value in bias.items():
            model.text_head[token_id, 0] = value


def text_biases(config: MossTTSConfig) -> dict[int, float]:
    """Favour: audio start, then frames (gen slot a little over the delay slot), then <|im_end|>."""
    return {
        config.audio_start_token_id: 1.2,
        config.im_end_token_id: 2.0,
        config.audio_assistant_gen_slot_token_id: 0.6,
        config.audio_assistant_delay_slot_token_id: -0.1,
    }


def write_tiny_model(folder: Path, *, seed: int = 0, codec_folder: Path | None = None,
                     text_vocab: int | None = None, hidden: int = 64, layers: int = 2, n_vq: int = 32) -> Path:
    """Write a tiny random delay model (and its tokenizer and processor config) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    special_ids = write_tokenizer(tokenizer, folder)
    vocab = text_vocab or -(-tokenizer.get_vocab_size() // 64) * 64
    config = tiny_config(vocab, hidden=hidden, layers=layers, n_vq=n_vq, special_ids=special_ids)
    config = replace(config, extra={"tiny_random_weights": True})
    (folder / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
    model = MossTTSDelayModel(config)
    model.init_random_weights(seed)
    shape_text_head(model, text_biases(config))
    save_weights(model, folder)
    processor_config = {
        "processor_class": "MossTTSDelayProcessor",
        "audio_tokenizer_name_or_path": str(codec_folder) if codec_folder else "OpenMOSS-Team/MOSS-Audio-Tokenizer",
    }
    (folder / PROCESSOR_CONFIG_FILE).write_text(json.dumps(processor_config, indent=2) + "\n", encoding="utf-8")
    return folder


def write_tiny_checkpoints(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Tiny model and tiny codec side by side; the model's processor config names the codec."""
    from moss_model.codec import write_tiny_codec

    out_dir = Path(out_dir)
    codec = write_tiny_codec(out_dir / "codec-tiny", seed=seed)
    model = write_tiny_model(out_dir / "moss-tts-tiny", seed=seed, codec_folder=codec.resolve())
    return model, codec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model, codec = write_tiny_checkpoints(args.out_dir, args.seed)
    print(f"tiny model: {model}\ntiny codec: {codec}")


if __name__ == "__main__":
    main()
