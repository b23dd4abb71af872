"""Chunked equals one-shot, for encode and decode, single rows and batches; the carried attention
state stays bounded by the context however long the stream runs."""

import pytest
import torch

from moss_model.codec import StreamingDecoder, StreamingEncoder, decode_stream, tiny_codec_config
from moss_model.codec.modules import TransformerStack
from moss_model.codec.tiny import random_codec

SPF = 1920

FRAMES = 40  # 3.2 s: past the tiny codec's 1 s attention context at every stage


@pytest.fixture(scope="module")
def codec():
    return random_codec(tiny_codec_config(), seed=1)


@pytest.fixture(scope="module")
def codes():
    gen = torch.Generator().manual_seed(11)
    return torch.randint(0, 1024, (2, 32, FRAMES), generator=gen)


@pytest.fixture(scope="module")
def one_shot_audio(codec, codes):
    return codec.decode(codes, chunk_frames=FRAMES).audio  # a single pass over all 40 frames


@pytest.mark.parametrize("chunk", [1, 3, 7, 12, 25])
def test_chunked_decode_equals_one_shot(codec, codes, one_shot_audio, chunk):
    chunked = codec.decode(codes, chunk_frames=chunk).audio
    torch.testing.assert_close(chunked, one_shot_audio, rtol=1e-4, atol=1e-4)


def test_streaming_decoder_with_irregular_pushes(codec, codes, one_shot_audio):
    decoder = StreamingDecoder(codec, batch_size=2, max_chunk_frames=6)
    pieces, start = [], 0
    for size in [1, 5, 13, 2, 0, 19]:  # 40 frames; a 13- and a 19-frame push are split internally
        piece = decoder.push(codes[..., start : start + size])
        assert piece.shape == (2, size * SPF)
        pieces.append(piece)
        start += size
    assert decoder.flush().shape == (2, 0)
    torch.testing.assert_close(torch.cat(pieces, dim=-1), one_shot_audio, rtol=1e-4, atol=1e-4)
    with pytest.raises(RuntimeError, match="after flush"):
        decoder.push(codes[..., :1])


def test_decode_stream_generator_and_out_device(codec, codes, one_shot_audio):
    chunks = (codes[..., i : i + 8] for i in range(0, FRAMES, 8))
    audio = torch.cat(list(decode_stream(codec, chunks, batch_size=2, out_device="cpu")), dim=-1)
    torch.testing.assert_close(audio, one_shot_audio, rtol=1e-4, atol=1e-4)


def test_batch_stream_rows_equal_single_streams(codec, codes):
    # a batch decoded chunk by chunk equals each row decoded alone (rows never see each other)
    batch = codec.decode(codes, chunk_frames=9).audio
    for row in range(2):
        alone = codec.decode(codes[row : row + 1], chunk_frames=4).audio
        torch.testing.assert_close(batch[row : row + 1], alone, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("chunk", [1, 4, 13])
def test_chunked_encode_equals_one_shot(codec, chunk):
    gen = torch.Generator().manual_seed(12)
    x = 0.3 * torch.randn(2, FRAMES * SPF, generator=gen)
    lengths = torch.tensor([FRAMES * SPF, 31 * SPF + 77])
    one = codec.encode(x, lengths, chunk_frames=FRAMES)
    chunked = codec.encode(x, lengths, chunk_frames=chunk)
    assert torch.equal(one.lengths, chunked.lengths) and one.lengths.tolist() == [40, 31]
    assert torch.equal(one.codes, chunked.codes)
    hidden_one = codec.encode_frames(x)
    states = codec.init_encoder_states()
    hidden_chunked = torch.cat(
        [codec.encode_frames(x[:, i * SPF : (i + chunk) * SPF], states) for i in range(0, FRAMES, chunk)], dim=1
    )
    torch.testing.assert_close(hidden_chunked, hidden_one, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("partial_frame", ["drop", "pad"])
def test_streaming_encoder_with_arbitrary_sample_pushes(codec, partial_frame):
    gen = torch.Generator().manual_seed(13)
    n = 23 * SPF + 500
    x = 0.3 * torch.randn(1, n, generator=gen)
    expected = codec.encode(x, partial_frame=partial_frame, chunk_frames=100).codes
    encoder = StreamingEncoder(codec, batch_size=1, max_chunk_frames=5, partial_frame=partial_frame)
    pieces, start = [], 0
    for size in [1000, 1, 5000, 0, 17 * SPF, 3333]:
        pieces.append(encoder.push(x[:, start : start + size]))
        start += size
    pieces.append(encoder.push(x[:, start:]))
    pieces.append(encoder.flush())
    got = torch.cat(pieces, dim=-1)
    assert got.shape == expected.shape == (1, 32, 24 if partial_frame == "pad" else 23)
    assert torch.equal(got, expected)


def _cache_lengths(states):
    return [[c.keys.shape[2] for c in s.caches] for s in states if s is not None]


def test_carried_state_is_bounded_by_the_context(codec):
    decoder = StreamingDecoder(codec, batch_size=1)
    gen = torch.Generator().manual_seed(14)
    sizes = []
    for _ in range(30):  # 30 x 5 frames = 12 s of audio, 12 attention contexts
        decoder.push(torch.randint(0, 1024, (1, 32, 5), generator=gen))
        sizes.append(decoder.state_nbytes())
    contexts = [m.context for m in codec.decoder if isinstance(m, TransformerStack)]
    assert contexts == [12, 25, 50, 100]
    layers = [len(m.transformer.layers) for m in codec.decoder if isinstance(m, TransformerStack)]
    assert _cache_lengths(decoder.states) == [[c - 1] * n for c, n in zip(contexts, layers)]
    assert len(set(sizes[5:])) == 1  # constant once the window is full
    assert decoder.frames == 150 and decoder.samples == 150 * SPF
    assert [s.offset for s in decoder.states if s is not None] == [150, 300, 600, 1200]


def test_long_stream_far_positions_still_match_one_shot(codec):
    """Positions deep into a stream (RoPE at large offsets) give what a single pass gives."""
    gen = torch.Generator().manual_seed(15)
    codes = torch.randint(0, 1024, (1, 32, 90), generator=gen)
    one = codec.decode(codes, chunk_frames=90).audio
    decoder = StreamingDecoder(codec, batch_size=1, max_chunk_frames=11)
    torch.testing.assert_close(decoder.push(codes), one, rtol=1e-4, atol=1e-4)


def test_batch_stream_with_rows_ending_at_different_times(codec, codes):
    """A narrator batch: row 1 ends after 17 frames; its later codes are pad (1024) and come out silent."""
    lengths = [FRAMES, 17]
    padded = codes.clone()
    padded[1, :, 17:] = 1024
    decoder = StreamingDecoder(codec, batch_size=2)
    pieces = []
    for start in range(0, FRAMES, 8):
        chunk_lengths = torch.tensor([min(max(n - start, 0), 8) for n in lengths])
        pieces.append(decoder.push(padded[..., start : start + 8], chunk_lengths))
    audio = torch.cat(pieces, dim=-1)
    assert (audio[1, 17 * SPF :] == 0).all()
    whole, _ = codec.decode(padded, torch.tensor(lengths), chunk_frames=FRAMES)
    torch.testing.assert_close(audio, whole, rtol=1e-4, atol=1e-4)
    alone = codec.decode(codes[1:, :, :17]).audio
    torch.testing.assert_close(audio[1:, : 17 * SPF], alone, rtol=1e-4, atol=1e-4)
