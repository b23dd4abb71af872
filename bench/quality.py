"""Benchmark: what the per-segment quality measures cost, per second of audio.

Cuts real speech (../shared/data/voices, English recordings; Gaussian noise where it is
missing) into segments of a few seconds and times, on one device:

- speaker embeddings (Resemblyzer's encoder): all segments in one batched call vs one call per
  segment;
- PocketSphinx transcription (no batch: one segment after another), on speech and on noise
  (noise makes its search wider and slower);
- WER of the transcripts (word edit distance).

Prints compute seconds (CPU time of this process, and wall) per second of audio, and how many
cores each measure needs to keep up with narration running at a given speed (audio seconds
produced per wall second, ``--narration-rate``).

    python bench/quality.py [--seconds 60] [--threads 1] [--device cpu] [--narration-rate 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moss_model.codec.rates import DEFAULT_SAMPLE_RATE  # noqa: E402

RATE = DEFAULT_SAMPLE_RATE  # the codec's rate, which narrated segments have
VOICES = Path(__file__).resolve().parents[2] / "shared" / "data" / "voices"


def speech_segments(total_s: float, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """Segments of 3-6 s cut in turn from the English recordings, ``total_s`` seconds in all."""
    rng = np.random.default_rng(seed)
    sources = []
    for name in ("reference_en.m4a", "reference_en_1.mp3"):
        if (VOICES / name).is_file():
            from moss_model.audio_io import load_audio

            sources.append(load_audio(VOICES / name, RATE).numpy())
    what = "speech from " + str(VOICES)
    if not sources:
        sources, what = [0.1 * rng.standard_normal(20 * RATE).astype(np.float32)], "noise (no voices found)"
    segments, total = [], 0.0
    while total < total_s:
        source = sources[len(segments) % len(sources)]
        length = min(int(rng.uniform(3, 6) * RATE), len(source))
        start = int(rng.integers(0, len(source) - length + 1))
        segments.append(source[start:start + length])
        total += length / RATE
    return segments, what


def timed(work) -> tuple[float, float, object]:
    """(CPU seconds of this process, wall seconds, result)."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = work()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def line(name: str, cpu: float, wall: float, audio_s: float, narration_rate: float) -> None:
    per = cpu / audio_s
    speed = f"{1 / per:7.0f}x real time per core" if per > 0 else "      (too fast to time)"
    print(f"  {name:<34} {per:8.4f} CPU-s/audio-s {wall / audio_s:8.4f} wall-s/audio-s {speed}  "
          f"{per * narration_rate:6.2f} cores at {narration_rate:g} audio-s/s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="audio measured (seconds, total)")
    parser.add_argument("--asr-seconds", type=float, default=30.0, help="audio transcribed (PocketSphinx is slow)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="device of the speaker encoder (cpu, cuda)")
    parser.add_argument("--narration-rate", type=float, default=50.0,
                        help="audio seconds narration produces per wall second (for the cores column)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from pipeline.quality import PocketSphinxASR, SpeakerEncoder, edit_distance, normalize_words

    segments, what = speech_segments(args.seconds)
    audio_s = sum(len(s) for s in segments) / RATE
    print(f"{len(segments)} segments, {audio_s:.1f} s of {what}; torch threads {args.threads}, device {args.device}")

    cpu, wall, encoder = timed(lambda: SpeakerEncoder(args.device))
    print(f"  encoder load: {cpu:.2f} CPU-s, {wall:.2f} s")
    encoder.embed(segments[:2], RATE)  # warm-up (first calls allocate)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    print("speaker embeddings")
    cpu, wall, batched = timed(lambda: (encoder.embed(segments, RATE), sync())[0])
    line("batched (one call)", cpu, wall, audio_s, args.narration_rate)
    cpu, wall, alone = timed(lambda: (np.stack([encoder.embed([s], RATE)[0] for s in segments]), sync())[0])
    line("one segment per call", cpu, wall, audio_s, args.narration_rate)
    print(f"  largest batched vs alone difference: {np.abs(batched - alone).max():.2e}")

    cpu, wall, asr = timed(lambda: PocketSphinxASR(in_process=True))  # CPU time counted in this process
    print(f"PocketSphinx (decoder load: {cpu:.2f} CPU-s, {wall:.2f} s)")
    few, total = [], 0.0
    for s in segments:
        if total >= args.asr_seconds:
            break
        few.append(s)
        total += len(s) / RATE
    cpu, wall, heard = timed(lambda: asr.transcribe(few, RATE, "en"))
    line("speech, one after another", cpu, wall, total, args.narration_rate)
    rng = np.random.default_rng(1)
    noise = [0.1 * rng.standard_normal(len(s)).astype(np.float32) for s in few[: max(1, len(few) // 3)]]
    noise_s = sum(len(s) for s in noise) / RATE
    cpu, wall, _ = timed(lambda: asr.transcribe(noise, RATE, "en"))
    line("noise, one after another", cpu, wall, noise_s, args.narration_rate)

    reference = "but i really can't complain about not having a normal college experience to you " * 2
    cpu, wall, _ = timed(lambda: [edit_distance(normalize_words(reference), normalize_words(h)) for h in heard])
    print("WER")
    line("edit distance of the transcripts", cpu, wall, total, args.narration_rate)


if __name__ == "__main__":
    main()
