"""The codec on a seeded tiny model: shapes and lengths, causality, batch independence, quantizer,
weight norm and RoPE against naive references, and the released key layout."""

import math

import pytest
import torch

from moss_model.codec import CodecConfig, CodecConfigError, MossAudioCodec, released_codec_config, tiny_codec_config
from moss_model.codec.modules import CausalSelfAttention, WeightNormPointwise, apply_rope, rope_tables
from moss_model.codec.tiny import random_codec

SPF = 1920



@pytest.fixture(scope="module")
def codec() -> MossAudioCodec:
    return random_codec(tiny_codec_config(), seed=0)


def waves(batch: int, frames: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(batch, int(frames * SPF), generator=gen)


def test_encode_decode_shapes_and_lengths(codec):
    x = waves(3, 20)
    lengths = torch.tensor([20 * SPF, 10 * SPF + 5, 7 * SPF - 1])
    codes, code_lengths = codec.encode(x, lengths)
    assert codes.shape == (3, 32, 20) and codes.dtype == torch.long
    assert code_lengths.tolist() == [20, 10, 6]  # partial frames dropped, as the released model counts
    assert (codes[1, :, 10:] == 0).all() and (codes[2, :, 6:] == 0).all()
    assert 0 <= int(codes.min()) and int(codes.max()) < 1024
    audio, audio_lengths = codec.decode(codes, code_lengths)
    assert audio.shape == (3, 20 * SPF) and audio.dtype == torch.float32
    assert audio_lengths.tolist() == [20 * SPF, 10 * SPF, 6 * SPF]
    assert (audio[1, 10 * SPF :] == 0).all() and (audio[2, 6 * SPF :] == 0).all()
    assert audio[2, : 6 * SPF].abs().mean() > 0.01


def test_partial_frame_pad_keeps_the_last_samples(codec):
    x = waves(2, 5)
    lengths = torch.tensor([4 * SPF + 1, 3 * SPF])
    codes, code_lengths = codec.encode(x, lengths, partial_frame="pad")
    assert code_lengths.tolist() == [5, 3]
    dropped, dropped_lengths = codec.encode(x, lengths)
    assert dropped_lengths.tolist() == [4, 3]
    assert torch.equal(codes[:, :, :3], dropped[:, :, :3]) and torch.equal(codes[0, :, :4], dropped[0, :, :4])
    # the kept partial frame sees zeros past the length, not the noise that pads the batch row
    alone = codec.encode(x[:1, : 4 * SPF + 1], partial_frame="pad").codes
    assert torch.equal(codes[:1], alone)


@pytest.mark.parametrize("n_samples", [13 * SPF, 13 * SPF + 700])
def test_encode_then_decode_keeps_the_length(codec, n_samples):
    x = waves(1, 14)[:, :n_samples]
    for mode, expected_frames in [("drop", n_samples // SPF), ("pad", math.ceil(n_samples / SPF))]:
        codes, code_lengths = codec.encode(x, partial_frame=mode)
        audio, audio_lengths = codec.decode(codes, code_lengths)
        assert int(code_lengths) == expected_frames
        assert int(audio_lengths) == audio.shape[-1] == expected_frames * SPF
        if n_samples % SPF == 0:
            assert int(audio_lengths) == n_samples  # whole frames round-trip exactly
        else:
            assert abs(int(audio_lengths) - n_samples) < SPF


@pytest.mark.parametrize("change_at", [9 * SPF, 9 * SPF + 1000])
def test_encoder_is_causal(codec, change_at):
    x = waves(1, 24, seed=1)
    y = x.clone()
    y[:, change_at:] = 0.3 * torch.randn(y.shape[-1] - change_at)
    untouched = change_at // SPF  # frames that end before the change
    hx, hy = codec.encode_frames(x), codec.encode_frames(y)
    torch.testing.assert_close(hx[:, :untouched], hy[:, :untouched], rtol=0, atol=1e-6)
    assert (hx[:, untouched:] - hy[:, untouched:]).abs().amax() > 1e-2  # the change does show later
    cx, cy = codec.encode(x).codes, codec.encode(y).codes
    assert torch.equal(cx[..., :untouched], cy[..., :untouched])
    assert not torch.equal(cx[..., untouched:], cy[..., untouched:])


def test_decoder_is_causal(codec):
    gen = torch.Generator().manual_seed(2)
    codes = torch.randint(0, 1024, (1, 32, 30), generator=gen)
    other = codes.clone()
    other[..., 17:] = torch.randint(0, 1024, (1, 32, 13), generator=gen)
    a, b = codec.decode(codes).audio, codec.decode(other).audio
    torch.testing.assert_close(a[:, : 17 * SPF], b[:, : 17 * SPF], rtol=0, atol=1e-5)
    assert (a[:, 17 * SPF :] - b[:, 17 * SPF :]).abs().amax() > 1e-2


def test_batch_rows_equal_rows_alone_whatever_the_padding(codec):
    lengths = [22 * SPF + 300, 9 * SPF, 15 * SPF + 1]
    batch = waves(3, 23, seed=3)  # samples past each length are noise, not zeros: they must not matter
    codes, code_lengths = codec.encode(batch, torch.tensor(lengths))
    audio, audio_lengths = codec.decode(codes, code_lengths)
    for i, n in enumerate(lengths):
        alone_codes, alone_len = codec.encode(batch[i : i + 1, :n])
        assert int(alone_len) == int(code_lengths[i])
        assert torch.equal(codes[i, :, : int(alone_len)], alone_codes[0])
        alone_audio, _ = codec.decode(alone_codes)
        torch.testing.assert_close(audio[i, : int(audio_lengths[i])], alone_audio[0], rtol=1e-4, atol=1e-4)


def test_decode_ignores_codes_past_lengths(codec):
    gen = torch.Generator().manual_seed(4)
    codes = torch.randint(0, 1024, (2, 32, 12), generator=gen)
    padded = codes.clone()
    padded[1, :, 7:] = 1024  # the delay model's pad code
    lengths = torch.tensor([12, 7])
    a, _ = codec.decode(codes, lengths)
    b, _ = codec.decode(padded, lengths)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 1023\].*1024"):
        codec.decode(padded)


def test_fewer_codebooks_are_a_prefix(codec):
    x = waves(2, 6, seed=5)
    full = codec.encode(x).codes
    part = codec.encode(x, n_codebooks=8).codes
    assert part.shape == (2, 8, 6)
    assert torch.equal(part, full[:, :8])  # residual quantization: the first 8 do not look at the rest
    audio8 = codec.decode(part).audio
    audio32 = codec.decode(full).audio
    assert audio8.shape == audio32.shape and not torch.allclose(audio8, audio32)
    with pytest.raises(ValueError, match="n_codebooks"):
        codec.encode(x, n_codebooks=33)


def test_quantizer_matches_a_naive_loop(codec):
    quantizer = codec.quantizer
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 5, 32, generator=gen)
    codes = quantizer.encode(x, 32)

    def wn(module):  # weight norm, written out: g * v / |v| per output row
        g = module.parametrizations.weight.original0[:, 0, 0]
        v = module.parametrizations.weight.original1[:, :, 0]
        return (g / v.norm(dim=1)).unsqueeze(1) * v, module.bias

    w_in, b_in = wn(quantizer.input_proj)
    w_out, b_out = wn(quantizer.output_proj)
    for b in range(2):
        for t in range(5):
            residual = w_in @ x[b, t] + b_in
            total = torch.zeros(16)
            for k, q in enumerate(quantizer.quantizers):
                wi, bi = wn(q.in_proj)
                wo, bo = wn(q.out_proj)
                z = wi @ residual + bi
                cosine = torch.nn.functional.normalize(q.codebook.weight, dim=1) @ (z / z.norm())
                best = int(cosine.argmax())
                assert best == int(codes[b, k, t]), (b, t, k)
                vec = wo @ q.codebook.weight[best] + bo
                residual, total = residual - vec, total + vec
            expected = w_out @ total + b_out
            torch.testing.assert_close(quantizer.decode(codes[b : b + 1, :, t : t + 1])[0, 0], expected, rtol=1e-4, atol=1e-4)


def test_weight_norm_matches_torch_parametrization():
    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(12, 5, kernel_size=1))
    with torch.no_grad():
        conv.parametrizations.weight.original0.mul_(torch.rand(5, 1, 1) + 0.5)
    ours = WeightNormPointwise(12, 5)
    ours.load_state_dict(conv.state_dict(), strict=True)  # same key names as torch's weight norm
    x = torch.randn(3, 7, 12)
    expected = conv(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)


def test_rope_matches_complex_rotation():
    cos, sin = rope_tables(offset=1000, steps=6, head_dim=8, max_period=10_000, device=torch.device("cpu"))
    x = torch.randn(2, 3, 6, 8)
    freqs = 10_000 ** (-torch.arange(4, dtype=torch.float64) * 2 / 8)
    angles = (1000 + torch.arange(6, dtype=torch.float64)).view(-1, 1) * freqs
    pairs = torch.view_as_complex(x.double().reshape(2, 3, 6, 4, 2).contiguous())
    expected = torch.view_as_real(pairs * torch.polar(torch.ones_like(angles), angles)).reshape(2, 3, 6, 8)
    torch.testing.assert_close(apply_rope(x, cos, sin).double(), expected, rtol=1e-4, atol=1e-4)


def test_attention_window_matches_a_naive_loop():
    torch.manual_seed(7)
    attn = CausalSelfAttention(dim=8, num_heads=2, context=4)
    x = torch.randn(1, 10, 8)
    rope = rope_tables(0, 10, 4, 10_000, torch.device("cpu"))
    out, _ = attn(x, rope, 0, None, keep_cache=False)
    q, k, v = attn.in_projs[0](x).reshape(1, 10, 3, 2, 4).permute(2, 0, 3, 1, 4)
    q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    rows = []
    for t in range(10):
        lo = max(0, t - 3)  # the query itself and the 3 steps before it
        w = torch.softmax(q[:, :, t : t + 1] @ k[:, :, lo : t + 1].transpose(-1, -2) / 2.0, dim=-1)
        rows.append(w @ v[:, :, lo : t + 1])
    expected = attn.out_projs[0](torch.cat(rows, dim=2).transpose(1, 2).reshape(1, 10, 8))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_released_layout_key_names_and_shapes():
    with torch.device("meta"):
        model = MossAudioCodec(released_codec_config())
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(shapes) == 1600
    assert shapes["encoder.1.input_proj.weight"] == (768, 240)
    assert shapes["encoder.1.output_proj.weight"] == (384, 768)
    assert "encoder.7.input_proj.weight" not in shapes  # 1280 in, d_model 1280: no projection
    assert shapes["encoder.7.transformer.layers.31.self_attn.in_projs.0.weight"] == (3840, 1280)
    assert shapes["encoder.7.transformer.layers.31.layer_scale_2.scale"] == (1280,)
    assert shapes["quantizer.input_proj.parametrizations.weight.original0"] == (512, 1, 1)
    assert shapes["quantizer.input_proj.parametrizations.weight.original1"] == (512, 768, 1)
    assert shapes["quantizer.quantizers.31.codebook.weight"] == (1024, 8)
    assert shapes["quantizer.quantizers.0.out_proj.parametrizations.weight.original1"] == (512, 8, 1)
    assert shapes["decoder.0.input_proj.weight"] == (1280, 768)
    assert "decoder.0.output_proj.weight" not in shapes
    assert shapes["decoder.6.output_proj.weight"] == (240, 768)
    assert shapes["decoder.6.transformer.layers.11.linear1.weight"] == (3072, 768)
    assert sum(math.prod(s) for s in shapes.values()) == 1_774_566_400
    contexts = released_codec_config()
    assert contexts.encoder_contexts() == [None, 1000, None, 500, None, 250, None, 125]
    assert contexts.decoder_contexts() == [125, None, 250, None, 500, None, 1000, None]


def test_config_round_trip_and_clear_errors():
    data = released_codec_config().to_dict()
    data["reversed_decoder_kwargs"] = data["encoder_kwargs"]  # present in the released file; unused
    assert CodecConfig.from_dict(data) == released_codec_config()
    bad = dict(data, model_type="moss_tts_delay")
    with pytest.raises(CodecConfigError, match="model_type 'moss_tts_delay' is not an audio codec"):
        CodecConfig.from_dict(bad)
    broken = released_codec_config().to_dict()
    broken["decoder_kwargs"][2]["input_dimension"] = 641
    with pytest.raises(CodecConfigError, match=r"decoder_kwargs\[2\]: input_dimension is 641 but the previous stage gives 640"):
        CodecConfig.from_dict(broken)
    broken = released_codec_config().to_dict()
    broken["encoder_kwargs"][0]["patch_size"] = 120
    with pytest.raises(CodecConfigError, match="encoder patch sizes multiply to 960, but downsample_rate is 1920"):
        CodecConfig.from_dict(broken)
    broken = released_codec_config().to_dict()
    broken["encoder_kwargs"][1]["module_type"] = "Conformer"
    with pytest.raises(CodecConfigError, match=r"encoder_kwargs\[1\]: unknown module_type 'Conformer'"):
        CodecConfig.from_dict(broken)
    assert issubclass(CodecConfigError, ValueError)
