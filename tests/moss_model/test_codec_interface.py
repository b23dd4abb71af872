"""The codec behind its declared interface: `MossAudioCodec` is an `AudioCodec`, and the rates and
codebook count it reports are its config's, not fixed numbers."""

import dataclasses
import subprocess
import sys

import pytest
import torch

from moss_model.codec import (
    DEFAULT_FRAME_RATE,
    DEFAULT_SAMPLE_RATE,
    AudioCodec,
    MossAudioCodec,
    random_codec,
    tiny_codec_config,
)


def as_audio_codec(codec: MossAudioCodec) -> AudioCodec:
    """Static check (pyright): the concrete codec is assignable to the protocol."""
    return codec


@pytest.fixture(scope="module")
def codec() -> MossAudioCodec:
    return random_codec(tiny_codec_config(), seed=0)


def test_tiny_codec_satisfies_the_protocol(codec):
    assert isinstance(as_audio_codec(codec), AudioCodec)


def test_rates_of_the_released_layout(codec):
    assert codec.sample_rate == DEFAULT_SAMPLE_RATE == 24000
    assert codec.frame_rate == DEFAULT_FRAME_RATE == 12.5
    assert codec.samples_per_frame == 1920
    assert codec.num_codebooks == 32


def test_rates_and_codebooks_come_from_the_config():
    config = dataclasses.replace(tiny_codec_config(num_quantizers=8), sampling_rate=16000)
    config.validate("test config")
    codec = random_codec(config, seed=0)
    assert codec.sample_rate == 16000
    assert codec.frame_rate == pytest.approx(16000 / 1920)
    assert codec.num_codebooks == 8
    result = codec.encode(0.1 * torch.randn(1, 3 * 1920))
    assert result.codes.shape == (1, 8, 3) and result.lengths.tolist() == [3]
    decoded = codec.decode(result.codes)
    assert decoded.audio.shape == (1, 3 * codec.samples_per_frame)


def test_rates_are_read_without_importing_torch():
    """Planning and finishing read the released rates with no codec; that must not load torch."""
    check = "import sys; from moss_model.codec.rates import DEFAULT_FRAME_RATE; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True)
