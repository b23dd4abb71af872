"""Decode-step speed of the generation engine with random weights.

    python bench/generate.py                              # tiny config on CPU, batches 1 8 32
    python bench/generate.py --config 8b --device cuda --dtype bfloat16 --batches 1 16
    python bench/generate.py --upstream /path/to/MOSS-TTS # also time the upstream loop, same weights
    python bench/generate.py --decode eager static static+compile  # compare decode modes

Prints ms per decode step and steps (and rows) per second per batch size (best of --repeats
runs, after a warm-up, for each --decode mode). The tiny config is the
issue's anchor: hidden 64, 2 layers, 4 heads, 2 kv heads, n_vq 32, text vocab 151936. With
--upstream (a local checkout of OpenMOSS/MOSS-TTS, never part of this project) the upstream
generate() runs on identical weights in the same process and the speed-up is printed as a ratio.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # upstream wraps its loop in a progress bar

import argparse
import sys
import time
from pathlib import Path
from dataclasses import replace
from types import SimpleNamespace

import torch

from moss_model.config import BackboneConfig
from moss_model.decoders import DECODE_MODES
from moss_model.generation import GenerationStats, Generator
from moss_model.model import MossTTSDelayModel
from moss_model.processor import MossTTSProcessor, SpeechRequest, TextTokenizer
from moss_model.sampling import DecodingParams
from moss_model.tiny import build_tokenizer, shape_text_head, tiny_config

EIGHT_B = BackboneConfig(
    vocab_size=151936, hidden_size=4096, num_hidden_layers=36, num_attention_heads=32,
    num_key_value_heads=8, intermediate_size=12288, head_dim=128,
)


def build(config_name: str, device: str, dtype: torch.dtype):
    tokenizer = build_tokenizer()
    ids = {token: tokenizer.token_to_id(token) for token in tokenizer.get_vocab() if token.startswith("<|")}
    config = tiny_config(151936, special_ids=ids)
    if config_name == "8b":
        config = replace(config, backbone=EIGHT_B)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # allocate in the target dtype: an 8B never exists in float32
    try:
        with torch.device(device):
            model = MossTTSDelayModel(config)
    finally:
        torch.set_default_dtype(default_dtype)
    model.init_non_persistent_buffers()
    model.init_random_weights(seed=0)
    # Steer the random model into audio and keep it there, so that every timed step is the
    # steady state of narration (a frame per step), for us and for the upstream loop alike.
    c = config
    shape_text_head(model, {c.audio_start_token_id: 2.0, c.audio_assistant_gen_slot_token_id: 1.0,
                            c.audio_assistant_delay_slot_token_id: -2.0, c.im_end_token_id: 2.0})
    model.eval()
    processor = MossTTSProcessor(TextTokenizer(tokenizer, fast=True), config)
    return model, processor


def time_ours(generator: Generator, prompts, steps: int) -> tuple[float, float]:
    """(decode ms per step, total ms per step including prefill) of one run."""
    stats = GenerationStats()
    generator.generate(prompts, list(range(len(prompts))), DecodingParams(), max_new_frames=steps, stats=stats)
    return stats.decode_seconds / stats.steps * 1000, (stats.decode_seconds + stats.prefill_seconds) / stats.steps * 1000


def load_upstream(path: str, model: MossTTSDelayModel):
    sys.path.insert(0, path)
    from moss_tts_delay import modeling_moss_tts
    from moss_tts_delay.configuration_moss_tts import MossTTSDelayConfig

    def output(**fields):  # upstream's output class rejects transformers 5's `cache` field
        fields.setdefault("past_key_values", fields.pop("cache", None))
        return SimpleNamespace(**fields)

    modeling_moss_tts.MossTTSDelayOutputWithPast = output
    data = model.config.to_dict()
    for key in ("model_type", "architectures"):
        data.pop(key)
    config = MossTTSDelayConfig(**data)
    config.language_config._attn_implementation = "sdpa"
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(model.dtype)  # built in place: an 8B copy never passes through float32 on the CPU
    try:
        with torch.device(model.device):
            upstream = modeling_moss_tts.MossTTSDelayModel(config).eval()
    finally:
        torch.set_default_dtype(default_dtype)
    upstream.load_state_dict({k: v.detach() for k, v in model.checkpoint_tensors().items()}, strict=True)
    return upstream


def time_upstream(upstream, batch, steps: int) -> float:
    """Total ms per step (prefill included) of one upstream generate() run."""
    started = time.perf_counter()
    upstream.generate(batch.input_ids.to(upstream.device), batch.attention_mask.to(upstream.device),
                      max_new_tokens=steps)
    if upstream.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["tiny", "8b"], default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (CUDA default)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--steps", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--profile", action="store_true",
                        help="after timing, profile one run per decode mode at the first batch size and print "
                             "the ops that cost the most device and host time")
    parser.add_argument("--sync-debug", action="store_true",
                        help="CUDA only: after timing, run once more at the first batch size and print where "
                             "the host waited for the GPU (torch.cuda.set_sync_debug_mode)")
    parser.add_argument("--upstream", default=None, help="local checkout of OpenMOSS/MOSS-TTS for the baseline")
    parser.add_argument("--decode", nargs="+", default=["auto"],
                        choices=[*DECODE_MODES, *(f"{m}+compile" for m in ("static", "graph"))],
                        help="decode modes to time (see moss_model.decoders); auto = the engine's defaults (CUDA "
                             "graphs over compiled layers on CUDA, eager on CPU); graph and static run uncompiled "
                             "layers; +compile fuses each layer's elementwise work with torch.compile")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32"))
    model, processor = build(args.config, args.device, dtype)
    upstream = load_upstream(args.upstream, model) if args.upstream else None
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"config={args.config} device={device_name} dtype={dtype} steps={args.steps}")
    print(f"weights streamed per step inside audio: {streamed_bytes(model) / 1e9:.2f} GB")
    texts = ["The quick brown fox jumps over the lazy dog.", "Call me the narrator.", "Some years ago, never mind how long."]
    for choice in args.decode:
        mode, _, extra = choice.partition("+")
        compile_layers = None if mode == "auto" else extra == "compile"
        generator = Generator(model, processor, decode_mode=mode, compile_layers=compile_layers)
        print(f"decode mode: {generator.decode_mode}{' with compiled layers' if generator.compile_layers else ''}")
        header = f"{'batch':>5} {'ms/step':>9} {'+prefill':>9} {'steps/s':>8} {'rows/s':>8} {'GB/s':>7}"
        print(header + (f" {'upstream ms/step':>17} {'speed-up':>9}" if upstream else ""))
        rows_per_second = {}
        for B in args.batches:
            prompts = [processor.build_prompt(SpeechRequest(text=texts[i % len(texts)] * (1 + i % 3))) for i in range(B)]
            # Runs alternate between us and upstream, and the best of each counts: on a shared
            # machine the minimum is the figure least disturbed by other work.
            ours, theirs = [], []
            time_ours(generator, prompts, args.steps)  # warm-up (graph capture, compilation)
            for _ in range(args.repeats):
                ours.append(time_ours(generator, prompts, args.steps))
                if upstream is not None:
                    theirs.append(time_upstream(upstream, processor.pad_batch(prompts), args.steps))
            decode_ms = min(d for d, _ in ours)
            total_ms = min(t for _, t in ours)
            bandwidth = streamed_bytes(model) / decode_ms / 1e6
            line = (f"{B:>5} {decode_ms:>9.2f} {total_ms:>9.2f} {1000 / decode_ms:>8.1f} "
                    f"{B * 1000 / decode_ms:>8.1f} {bandwidth:>7.0f}")
            if upstream is not None:
                upstream_ms = min(theirs)
                line += f" {upstream_ms:>17.2f} {upstream_ms / total_ms:>8.1f}x"
            print(line, flush=True)
            rows_per_second[B] = B * 1000 / decode_ms
        first = args.batches[0]
        if args.profile:
            prompts = [processor.build_prompt(SpeechRequest(text=texts[i % len(texts)])) for i in range(first)]
            print_profile(generator, prompts, args.steps)
        if args.sync_debug:
            prompts = [processor.build_prompt(SpeechRequest(text=texts[i % len(texts)])) for i in range(first)]
            print_host_waits(generator, prompts, args.steps)
        for B in args.batches[1:]:
            print(f"throughput at batch {B}: {rows_per_second[B] / rows_per_second[first]:.1f}x batch {first}")
        del generator  # frees its kept KV caches and graphs before the next mode
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()


def print_profile(generator: Generator, prompts, steps: int) -> None:
    """The ops of one generate() run that cost the most, by device time and by host time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if generator.model.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as profiler:
        time_ours(generator, prompts, steps)
    averages = profiler.key_averages()
    print(f"profile of one run of {steps} steps at batch {len(prompts)}:")
    if generator.model.device.type == "cuda":
        print(averages.table(sort_by="self_device_time_total", row_limit=15, max_name_column_width=60))
    print(averages.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60))


def print_host_waits(generator: Generator, prompts, steps: int) -> None:
    """Where one generate() run synchronized the host with the GPU: call sites and counts."""
    import collections
    import traceback
    import warnings

    sites: collections.Counter[str] = collections.Counter()

    def record(message, category, filename, lineno, file=None, line=None):
        frames = [f for f in traceback.extract_stack()[:-1] if "/moss_model/" in f.filename]
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} {frames[-1].line}" if frames else f"{filename}:{lineno}"
        sites[where] += 1

    stats = GenerationStats()
    previous = warnings.showwarning
    warnings.showwarning = record
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = record
            generator.generate(prompts, list(range(len(prompts))), DecodingParams(), max_new_frames=steps, stats=stats)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        warnings.showwarning = previous
    print(f"host waits in one run of {stats.steps} steps at batch {len(prompts)}: {sum(sites.values())}")
    for where, count in sites.most_common():
        print(f"{count:>6}  {where}")


def streamed_bytes(model: MossTTSDelayModel) -> int:
    """Bytes of weights one decode step reads inside audio: every matrix but the embedding tables
    (rows are gathered) and the text head (two rows are scored)."""
    skipped = {model.language_model.embed_tokens.weight, model.audio_embeddings, model.text_head}
    return sum(p.numel() * p.element_size() for p in model.parameters() if all(p is not s for s in skipped))


if __name__ == "__main__":
    main()
