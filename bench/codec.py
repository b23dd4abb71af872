"""Codec decoding throughput and peak memory, the way a narrator decodes a chapter.

For each (config, duration) it starts a fresh Python process that builds a random-weight codec
(tiny or the released full-size shape), then decodes `seconds` of random codes chunk by chunk
with `StreamingDecoder` (each audio chunk moved to the CPU and written to a temporary WAV file, as
the narrator writes a chapter), and reports:

- audio seconds decoded per wall-clock second (after a short warm-up);
- peak memory: on CUDA `torch.cuda.max_memory_allocated` during decoding; on CPU the process's
  peak resident set size during decoding (a fresh process per measurement; VmHWM reset through
  /proc/self/clear_refs just before decoding, falling back to the lifetime ru_maxrss) and its
  growth over the resident size just before decoding (weights and runtime already loaded).

The streaming design target: peak memory for 10 minutes of codes at most 1.5x that for 60 s.

    python bench/codec.py                                  # tiny and full, 60 s and 600 s
    python bench/codec.py --configs tiny --seconds 60 600
    python bench/codec.py --configs full --seconds 60 --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident size: VmHWM (since the last reset_peak_rss), else the lifetime ru_maxrss."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak covers decoding only."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def worker(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(ROOT))
    import soundfile
    import torch

    from moss_model.codec import StreamingDecoder, random_codec, released_codec_config, tiny_codec_config

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    config = tiny_codec_config(context_duration=10.0) if args.config == "tiny" else released_codec_config()
    codec = random_codec(config, seed=0, device=device, dtype=dtype)
    frames = int(round(args.seconds * config.frame_rate))
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(0, config.codebook_size, (1, config.num_quantizers, frames), generator=gen).to(device)
    chunk = args.chunk_frames or codec.default_chunk_frames

    warm = StreamingDecoder(codec, 1, out_device="cpu")
    warm.push(codes[..., : min(frames, 2 * chunk)])
    del warm
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated()
    import gc

    gc.collect()
    peak_after_build = peak_rss_mb()
    peak_reset = reset_peak_rss()
    rss_before = rss_mb()

    with tempfile.TemporaryDirectory() as tmp:
        with soundfile.SoundFile(Path(tmp) / "chapter.wav", "w", samplerate=config.sampling_rate, channels=1, subtype="FLOAT") as out:
            decoder = StreamingDecoder(codec, 1, max_chunk_frames=chunk, out_device="cpu")
            start = time.perf_counter()
            for i in range(0, frames, chunk):
                audio = decoder.push(codes[..., i : i + chunk])
                out.write(audio[0].numpy())
            decoder.flush()
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - start
            written = out.frames
    result = {
        "config": args.config,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "audio_seconds": written / config.sampling_rate,
        "chunk_frames": chunk,
        "wall_seconds": wall,
        "realtime_factor": written / config.sampling_rate / wall,
        "rss_before_decode_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),  # during decoding when peak_reset, else lifetime
        "peak_reset": peak_reset,
        "peak_rss_build_mb": peak_after_build,
        "params_m": sum(p.numel() for p in codec.parameters()) / 1e6,
    }
    result["rss_growth_mb"] = result["peak_rss_mb"] - rss_before
    if device.type == "cuda":
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["cuda_peak_over_weights_mb"] = (torch.cuda.max_memory_allocated() - cuda_before) / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["tiny", "full"], choices=["tiny", "full"])
    parser.add_argument("--seconds", nargs="+", type=float, default=[60.0, 600.0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--chunk-frames", type=int, default=None, help="frames per push (default: one context, 125)")
    parser.add_argument("--json", type=Path, default=None, help="also write all results to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", default="tiny", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        args.seconds = args.seconds[0]
        print(json.dumps(worker(args)))
        return

    results = []
    for config in args.configs:
        for seconds in args.seconds:
            command = [
                sys.executable, __file__, "--worker", "--config", config, "--seconds", str(seconds),
                "--device", args.device, "--dtype", args.dtype,
            ]
            if args.chunk_frames:
                command += ["--chunk-frames", str(args.chunk_frames)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{config} {seconds:.0f}s failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results.append(result)
            memory = (
                f"cuda peak {result['cuda_peak_mb']:8.1f} MB (+{result['cuda_peak_over_weights_mb']:.1f} over weights)"
                if "cuda_peak_mb" in result
                else f"peak RSS {result['peak_rss_mb']:8.1f} MB (+{result['rss_growth_mb']:.1f} while decoding)"
            )
            print(
                f"{config:4s} {result['params_m']:7.1f}M params  {result['audio_seconds']:6.0f} s audio  "
                f"{result['realtime_factor']:8.2f} audio s / wall s  {memory}  [{result['device']}, {result['dtype']}, "
                f"{result['threads']} threads, chunk {result['chunk_frames']} frames]",
                flush=True,
            )
    for config in args.configs:
        mine = [r for r in results if r["config"] == config]
        if len(mine) >= 2:
            key = "cuda_peak_mb" if "cuda_peak_mb" in mine[0] else "peak_rss_mb"
            short, long = min(mine, key=lambda r: r["audio_seconds"]), max(mine, key=lambda r: r["audio_seconds"])
            ratio = long[key] / short[key]
            verdict = "ok" if ratio <= 1.5 else "OVER the 1.5x target"
            print(
                f"{config}: peak memory {long['audio_seconds']:.0f} s / {short['audio_seconds']:.0f} s = {ratio:.3f} ({verdict})"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
