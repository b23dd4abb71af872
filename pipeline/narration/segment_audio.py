"""A segment's audio: its codes decoded alone, in fixed shapes, on the device that narrated it.

Narration decodes every accepted segment once, where the model runs (the GPU, when there is
one), and keeps the audio beside the codes in the segment store; finishing then only reads it.
For a segment's audio to depend on nothing but its codes, every decode has a shape fixed by
the segment alone: its frames are padded up to a multiple of `FRAME_BUCKET` and decoded in a
batch of exactly `decode_rows(device)` rows (unused rows hold zeros). The codec is causal, so
the padding never reaches the segment's own samples.

Stored audio sits on a 24-bit grid with 12 dB of headroom over full scale (`to_grid`), so
FLAC keeps it exactly: what finishing reads is bit for bit what the narrator measured.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch

from moss_model.codec import AudioCodec

FRAME_BUCKET = 64  # frames (5.12 s): a decode's length is the segment's rounded up to this
GRID_SCALE = 2**21  # grid steps per unit: 24-bit integers cover [-4, 4), 12 dB over full scale


def decode_rows(device: torch.device) -> int:
    """Rows per decode: a GPU decodes several segments for about the cost of one; a CPU does not."""
    return 8 if device.type == "cuda" else 1


def bucket_frames(frames: int) -> int:
    return max(FRAME_BUCKET, -(-frames // FRAME_BUCKET) * FRAME_BUCKET)


def to_grid(audio: np.ndarray) -> np.ndarray:
    """float audio -> float32 on the stored grid (rounded to 1/GRID_SCALE, clipped to the 24-bit range)."""
    steps = np.clip(np.rint(np.asarray(audio, dtype=np.float64) * GRID_SCALE), -(2**23), 2**23 - 1)
    return (steps / GRID_SCALE).astype(np.float32)


def decode_segments(codec: AudioCodec, codes: Sequence[torch.Tensor | np.ndarray]) -> list[np.ndarray]:
    """Each segment's codes [frames, n_vq] -> its audio (float32 mono at the codec's rate, on the grid).

    Segments of one length bucket share a decode; the result of one does not depend on the
    others, on their order, or on how many were asked for at once.
    """
    rows = decode_rows(codec.device)
    spf = codec.samples_per_frame
    out: list[np.ndarray | None] = [None] * len(codes)
    by_bucket: dict[int, list[int]] = {}
    for i, c in enumerate(codes):
        if c.shape[0]:
            by_bucket.setdefault(bucket_frames(int(c.shape[0])), []).append(i)
        else:
            out[i] = np.zeros(0, np.float32)
    with torch.inference_mode():
        for bucket, members in sorted(by_bucket.items()):
            for first in range(0, len(members), rows):
                group = members[first : first + rows]
                batch = torch.zeros(rows, codes[group[0]].shape[1], bucket, dtype=torch.long)
                for row, i in enumerate(group):
                    given = codes[i]
                    segment = torch.as_tensor(np.asarray(given, dtype=np.int64) if isinstance(given, np.ndarray)
                                              else given.long().cpu())
                    batch[row, :, : segment.shape[0]] = segment.T
                audio = codec.decode(batch.to(codec.device)).audio.float().cpu().numpy()
                for row, i in enumerate(group):
                    out[i] = to_grid(audio[row, : codes[i].shape[0] * spf])
    return [a for a in out if a is not None]


def level_dbfs(audio: np.ndarray) -> float:
    """The RMS level of a segment's audio in dBFS (-inf when it has none)."""
    if not audio.size:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return 20 * float(np.log10(max(rms, 1e-10)))


def audio_to_flac(audio: np.ndarray, sample_rate: int) -> bytes:
    """Grid audio -> FLAC bytes (24-bit), lossless for audio from `to_grid`."""
    import soundfile  # here, so that decoding needs only torch and numpy (a bare GPU machine)

    steps = np.rint(np.asarray(audio, dtype=np.float64) * GRID_SCALE).astype(np.int32)
    buffer = io.BytesIO()
    soundfile.write(buffer, steps << 8, sample_rate, format="FLAC", subtype="PCM_24")  # int32 carries 24 bits high
    return buffer.getvalue()


def audio_from_flac(data: bytes) -> tuple[np.ndarray, int]:
    """FLAC bytes from `audio_to_flac` -> (grid audio float32, sample rate)."""
    import soundfile

    read, sample_rate = soundfile.read(io.BytesIO(data), dtype="int32")
    steps = np.asarray(read, dtype=np.int32)
    return ((steps >> 8).astype(np.float64) / GRID_SCALE).astype(np.float32), int(sample_rate)
