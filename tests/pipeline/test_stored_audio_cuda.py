"""Segment audio decoded on a GPU, 8 rows at a time (bench/cuda_check.sh runs this on a device machine,
which has PyTorch but not every package of the project: this file imports only what it needs)."""

import numpy as np
import pytest
import torch

from moss_model.codec import load_codec
from pipeline.narration.segment_audio import decode_segments


def random_codes(frames: int, n_vq: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1024, size=(frames, n_vq)).astype(np.int16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (bench/cuda_check.sh runs it)")
def test_on_cuda_a_segments_audio_does_not_depend_on_its_batch_and_matches_the_cpu(tiny_checkpoints):
    _, codec_dir = tiny_checkpoints
    cpu, cuda = load_codec(codec_dir), load_codec(codec_dir, device="cuda")
    assert cuda.dtype == torch.float32  # the codec runs in full precision on the GPU too
    segments = [random_codes(f, 32, seed) for seed, f in enumerate([30, 70, 45, 64, 3, 100, 20, 60, 61, 10, 33])]
    alone = [decode_segments(cuda, [s])[0] for s in segments]
    together = decode_segments(cuda, segments)
    shuffled = decode_segments(cuda, segments[::-1])[::-1]
    for a, b, c in zip(alone, together, shuffled):
        assert a.tobytes() == b.tobytes() == c.tobytes()
    on_cpu = decode_segments(cpu, segments)
    worst = max(float(np.abs(g - c).max()) for g, c in zip(together, on_cpu))
    print(f"segment audio, CUDA vs CPU (both fp32): max abs difference {worst:.2e}")
    assert worst < 1e-3
