"""Benchmark: finishing one hour of decoded audio on this machine (decoding excluded).

Synthesizes an hour of speech-like audio (harmonic syllables with wandering pitch and
fricative noise, loud peaks, pauses), cut into ~5 s segments, then times
``finish_chapter`` (stitch, loudness + true-peak limiter, FLAC, lossy, subtitles, with every
delivered file decoded and measured after encoding, and encoded again if it misses) and
``finish_book`` (the M4B of that hour: the chapter's AAC stream, made and measured by
``finish_chapter``, joined by stream copy and measured again) separately. Prints wall times,
CPU seconds (this process and FFmpeg), peak memory and what each delivered file measures.
The machine is shared: compare CPU seconds, and wall times only at a low load average.

    python bench/finish.py [--minutes 60] [--lossy mp3] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moss_model.codec.rates import DEFAULT_SAMPLE_RATE  # noqa: E402
from pipeline.finishing.finish import FinishOptions, SegmentSpan, finish_book, finish_chapter  # noqa: E402
from pipeline.finishing.loudness import integrated_loudness, true_peak_db  # noqa: E402


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Syllable-like bursts: a harmonic voice with wandering pitch plus fricative noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * DEFAULT_SAMPLE_RATE)
    out = np.zeros(n, dtype=np.float32)
    chunk = 60 * DEFAULT_SAMPLE_RATE
    phase = 0.0
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        t = np.arange(m) / DEFAULT_SAMPLE_RATE
        f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * (t + lo / DEFAULT_SAMPLE_RATE)) + 10 * np.sin(2 * np.pi * 3.1 * t)
        ph = phase + 2 * np.pi * np.cumsum(f0) / DEFAULT_SAMPLE_RATE
        phase = float(ph[-1])
        offsets = rng.uniform(0, 2 * np.pi, size=8)
        voice = sum((0.6**k) * np.sin(k * ph + offsets[k]) for k in range(1, 8))
        envelope = np.zeros(m)
        pos = 0
        while pos < m:
            length = int(rng.uniform(0.12, 0.3) * DEFAULT_SAMPLE_RATE)
            take = min(length, m - pos)
            envelope[pos:pos + take] = rng.lognormal(0.0, 0.35) * np.hanning(length)[:take]
            pos += length + int(rng.choice([0.02, 0.05, 0.08, 0.35], p=[0.5, 0.3, 0.12, 0.08]) * DEFAULT_SAMPLE_RATE)
        noise = rng.standard_normal(m) * 0.15
        out[lo:lo + m] = (0.05 * envelope * (voice + noise)).astype(np.float32)
    return out


def segments_for(num_samples: int, seed: int = 1) -> list[SegmentSpan]:
    rng = np.random.default_rng(seed)
    kinds = ["sentence"] * 6 + ["clause"] * 2 + ["paragraph"]
    segments = []
    start = 0
    while start < num_samples:
        end = min(num_samples, start + int(rng.uniform(3.0, 8.0) * DEFAULT_SAMPLE_RATE))
        kind = kinds[rng.integers(len(kinds))]
        segments.append(SegmentSpan(start, end, text=f"Sentence {len(segments) + 1}.", boundary=kind))
        start = end
    segments[-1] = SegmentSpan(segments[-1].start, segments[-1].end, segments[-1].text, "chapter")
    return segments


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB since the last ``reset_peak_rss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def cpu_seconds() -> tuple[float, float]:
    """CPU time (user + system) used so far by this process and by its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def reset_peak_rss() -> bool:
    """Start a new peak-RSS measurement (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--lossy", default="mp3", help="mp3, opus, aac or none")
    parser.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    args = parser.parse_args()

    print(f"load average at the start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    audio = speech_like(args.minutes * 60.0)
    segments = segments_for(len(audio))
    options = FinishOptions(lossy_format=None if args.lossy == "none" else args.lossy)
    plr = true_peak_db(audio) - integrated_loudness(audio, DEFAULT_SAMPLE_RATE)
    print(f"input: {len(audio) / DEFAULT_SAMPLE_RATE / 60:.1f} min, {len(segments)} segments, "
          f"peak-to-loudness ratio {plr:.1f} dB", flush=True)
    input_mb = audio.nbytes / 1e6
    reset = reset_peak_rss()
    print(f"RSS before finishing (holds the {input_mb:.0f} MB input): {peak_rss_mb():.0f} MB"
          + ("" if reset else " (peak could not be reset: figures below include the synthesis)"))

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        started, (own0, kids0) = time.perf_counter(), cpu_seconds()
        start_cpu = own0 + kids0
        chapter = finish_chapter(audio, segments, out, 0, "Chapter One", options, "Bench Book", "Bench Author")
        chapter_s, (own1, kids1) = time.perf_counter() - started, cpu_seconds()
        print(f"finish_chapter: {chapter_s:.1f} s wall "
              f"(stitch + loudness + limiter + FLAC + {options.lossy_format or 'no lossy'} + subtitles); "
              f"CPU {own1 - own0:.1f} s Python + {kids1 - kids0:.1f} s FFmpeg")
        print(f"  input {chapter.input_lufs:.2f} LUFS -> output {chapter.output_lufs:.2f} LUFS, "
              f"gain {chapter.gain_db:+.2f} dB, limiter up to {chapter.limiter_reduction_db:.2f} dB, "
              f"true peak {chapter.true_peak_dbtp:.2f} dBTP")
        for name, delivered in (("FLAC", chapter.flac), (options.lossy_format, chapter.lossy),
                                ("AAC for the M4B", chapter.m4b_part_figures)):
            if delivered is not None:
                print(f"  delivered {name}: {delivered.lufs:.2f} LUFS, {delivered.true_peak_dbtp:.2f} dBTP "
                      f"({delivered.passes} encode(s))")
        print(f"  peak RSS during finish_chapter: {peak_rss_mb():.0f} MB")
        reset_peak_rss()
        started, (own0, kids0) = time.perf_counter(), cpu_seconds()
        m4b = finish_book([chapter], out / "book.m4b", "Bench Book", "Bench Author", options=options)
        book_s, (own1, kids1) = time.perf_counter() - started, cpu_seconds()
        print(f"finish_book (M4B, AAC {options.m4b_bitrate}, encoder speed {options.encoder_speed}): "
              f"{book_s:.1f} s wall; CPU {own1 - own0:.1f} s Python + {kids1 - kids0:.1f} s FFmpeg")
        print(f"  delivered M4B: {m4b.lufs:.2f} LUFS, {m4b.true_peak_dbtp:.2f} dBTP ({m4b.passes} encode(s))")
        total_cpu = sum(cpu_seconds()) - start_cpu
        print(f"total: {chapter_s + book_s:.1f} s wall, {total_cpu:.1f} CPU-s for {args.minutes:.0f} min of audio")
        print(f"  peak RSS during finish_book: {peak_rss_mb():.0f} MB (this process; FFmpeg runs apart)")
        print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
              "(other work on the machine slows the wall times)")


if __name__ == "__main__":
    main()
