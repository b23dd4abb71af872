"""Chunk-by-chunk encoding and decoding with the attention state carried across chunks.

Every transformer stage of the codec is causal with a bounded attention window, so a stream can
be cut anywhere on a frame boundary: each stage keeps the keys and values of its last
`context - 1` steps (10 s of audio on the released codec), and the result of a chunked pass
equals the one-shot result. Memory is bounded by that window plus one chunk, whatever the length
of the stream; all rows of a batch advance together (padding at the end of a row is causal, so it
never changes that row's earlier output).

    decoder = codec.streaming_decoder(batch_size=1, out_device="cpu")
    for codes in chapter_code_chunks:          # [B, K, t] each
        write(decoder.push(codes))             # [B, t * samples_per_frame] float32
    write(decoder.flush())
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal

import torch

from moss_model.codec.modules import StageState
from moss_model.codec.network import CodecNetwork

PartialFrame = Literal["drop", "pad"]


class StreamingDecoder:
    """Turns a stream of code chunks into a stream of audio chunks (samples_per_frame per frame).

    `push(codes [B, K, t]) -> audio [B, t * samples_per_frame]`; chunks of any size are split into
    pieces of at most `max_chunk_frames`, so a caller may push a whole chapter or one frame at a
    time. The decoder has no look-ahead: every frame pushed comes out at once, and `flush()` only
    closes the stream. `out_device` (e.g. "cpu") moves each audio chunk off the accelerator.
    """

    def __init__(
        self,
        codec: CodecNetwork,
        batch_size: int = 1,
        *,
        max_chunk_frames: int | None = None,
        out_device: str | torch.device | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.codec = codec
        self.batch_size = batch_size
        self.max_chunk_frames = _chunk(max_chunk_frames, codec.default_chunk_frames)
        self.out_device = None if out_device is None else torch.device(out_device)
        self.states: list[StageState | None] = codec.init_decoder_states()
        self.frames = 0  # frames decoded so far
        self.closed = False

    @torch.no_grad()
    def push(self, codes: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """codes [B, K, t] -> audio [B, t * samples_per_frame] float32.

        `lengths` (optional, [B]) are the valid frames of each row in this chunk, for rows that end
        before the others: codes past them may hold anything (a pad code) and come out as silence.
        """
        if self.closed:
            raise RuntimeError("push() after flush(): start a new StreamingDecoder for a new stream")
        if lengths is not None:
            codes, lengths = self.codec.mask_codes(codes, lengths)
        codes = self.codec.check_codes(codes, self.batch_size)
        pieces = []
        for start in range(0, codes.shape[-1], self.max_chunk_frames):
            piece = codes[..., start : start + self.max_chunk_frames]
            audio = self.codec.decode_frames(piece, self.states)
            self.frames += piece.shape[-1]
            pieces.append(audio if self.out_device is None else audio.to(self.out_device))
        if not pieces:
            return self._empty()
        audio = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)
        if lengths is not None:
            self.codec.silence_past(audio, lengths)
        return audio

    def flush(self) -> torch.Tensor:
        """End the stream (nothing is held back, so this returns no samples) and drop the state."""
        self.closed = True
        self.states = []
        return self._empty()

    @property
    def samples(self) -> int:
        return self.frames * self.codec.samples_per_frame

    def state_nbytes(self) -> int:
        return sum(s.nbytes() for s in self.states if s is not None)

    def _empty(self) -> torch.Tensor:
        device = self.out_device or self.codec.device
        return torch.zeros(self.batch_size, 0, device=device, dtype=torch.float32)


class StreamingEncoder:
    """Turns a stream of waveform chunks (any sizes) into a stream of code chunks.

    `push(samples [B, n]) -> codes [B, K, t]` encodes every whole frame available and keeps the
    remainder (< samples_per_frame samples) for the next push. `flush()` ends the stream: with
    `partial_frame="drop"` (the released model's convention, lengths // samples_per_frame) the remainder is
    dropped; with "pad" it is zero-padded to one last frame.
    """

    def __init__(
        self,
        codec: CodecNetwork,
        batch_size: int = 1,
        n_codebooks: int | None = None,
        *,
        max_chunk_frames: int | None = None,
        partial_frame: PartialFrame = "drop",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if partial_frame not in ("drop", "pad"):
            raise ValueError(f"partial_frame must be 'drop' or 'pad', got {partial_frame!r}")
        self.codec = codec
        self.batch_size = batch_size
        self.n_codebooks = codec.check_n_codebooks(n_codebooks)
        self.max_chunk_frames = _chunk(max_chunk_frames, codec.default_chunk_frames)
        self.partial_frame = partial_frame
        self.states: list[StageState | None] = codec.init_encoder_states()
        self.pending = torch.zeros(batch_size, 0, device=codec.device, dtype=torch.float32)
        self.frames = 0
        self.closed = False

    @torch.no_grad()
    def push(self, samples: torch.Tensor) -> torch.Tensor:
        if self.closed:
            raise RuntimeError("push() after flush(): start a new StreamingEncoder for a new stream")
        samples = self.codec.check_waveforms(samples)
        if samples.shape[0] != self.batch_size:
            raise ValueError(f"expected a batch of {self.batch_size} rows, got {samples.shape[0]}")
        spf = self.codec.samples_per_frame
        buffer = torch.cat([self.pending, samples.to(self.pending)], dim=-1)
        whole = buffer.shape[-1] // spf
        self.pending = buffer[:, whole * spf :]
        return self._encode(buffer[:, : whole * spf])

    @torch.no_grad()
    def flush(self) -> torch.Tensor:
        spf = self.codec.samples_per_frame
        tail = self.pending
        self.pending = tail[:, :0]
        codes = self._encode(tail[:, :0])
        if self.partial_frame == "pad" and tail.shape[-1] > 0:
            padded = torch.nn.functional.pad(tail, (0, spf - tail.shape[-1]))
            codes = self._encode(padded)
        self.closed = True
        self.states = []
        return codes

    def _encode(self, wave: torch.Tensor) -> torch.Tensor:
        spf = self.codec.samples_per_frame
        frames = wave.shape[-1] // spf
        pieces = []
        step = self.max_chunk_frames * spf
        for start in range(0, frames * spf, step):
            hidden = self.codec.encode_frames(wave[:, start : start + step], self.states)
            pieces.append(self.codec.quantizer.encode(hidden, self.n_codebooks))
        self.frames += frames
        if not pieces:
            return torch.zeros(self.batch_size, self.n_codebooks, 0, dtype=torch.long, device=self.codec.device)
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)


def decode_stream(
    codec: CodecNetwork,
    chunks: Iterable[torch.Tensor],
    *,
    batch_size: int = 1,
    out_device: str | torch.device | None = None,
) -> Iterator[torch.Tensor]:
    """Generator form of `StreamingDecoder`: yields one audio chunk per code chunk."""
    decoder = StreamingDecoder(codec, batch_size, out_device=out_device)
    for codes in chunks:
        yield decoder.push(codes)
    decoder.flush()


def _chunk(value: int | None, default: int) -> int:
    value = default if value is None else int(value)
    if value < 1:
        raise ValueError(f"max_chunk_frames must be >= 1, got {value}")
    return value
