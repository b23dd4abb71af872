"""Numerical parity of our codec with the upstream reference (OpenMOSS/MOSS-Audio-Tokenizer) on
identical random weights.

The upstream code is not part of this project, so this runs only when MOSS_AUDIO_TOKENIZER_UPSTREAM
names a local checkout of that repository (the folder holding modeling_moss_audio_tokenizer.py):

    MOSS_AUDIO_TOKENIZER_UPSTREAM=/path/to/MOSS-Audio-Tokenizer make test ARGS=tests/moss_model/test_codec_upstream.py

It imports the upstream classes from that checkout as plain modules (no trust_remote_code), loads
our tiny codec's weights into them with a strict check, and compares codes and waveforms.
"""

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from moss_model.codec import CodecConfig, MossAudioCodec, tiny_codec_config
from moss_model.codec.tiny import random_codec

UPSTREAM = os.environ.get("MOSS_AUDIO_TOKENIZER_UPSTREAM")
pytestmark = pytest.mark.skipif(
    not UPSTREAM or not (Path(UPSTREAM) / "modeling_moss_audio_tokenizer.py").is_file(),
    reason="set MOSS_AUDIO_TOKENIZER_UPSTREAM to a checkout of OpenMOSS/MOSS-Audio-Tokenizer",
)
SPF = 1920



@pytest.fixture(scope="module")
def upstream():
    root = Path(UPSTREAM)
    name = "moss_audio_tokenizer_upstream"
    spec = importlib.util.spec_from_file_location(name, root / "__init__.py", submodule_search_locations=[str(root)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    modeling = importlib.import_module(f"{name}.modeling_moss_audio_tokenizer")
    configuration = importlib.import_module(f"{name}.configuration_moss_audio_tokenizer")
    return modeling.MossAudioTokenizerModel, configuration.MossAudioTokenizerConfig


@pytest.fixture(scope="module")
def pair(upstream):
    Model, Config = upstream
    ours = random_codec(tiny_codec_config(), seed=5)
    theirs = Model(Config(**ours.config.to_dict())).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs


def test_released_config_builds_the_same_state_dict(upstream):
    Model, Config = upstream
    data = json.loads((Path(UPSTREAM) / "config.json").read_text())
    with torch.device("meta"):
        theirs = Model(Config(**data))
        ours = MossAudioCodec(CodecConfig.from_dict(data))
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in theirs.state_dict().items()
    }


def test_encode_matches_upstream_batch_encode(pair):
    ours, theirs = pair
    gen = torch.Generator().manual_seed(0)
    lengths = [30 * SPF + 123, 17 * SPF]
    wavs = [0.3 * torch.randn(n, generator=gen) for n in lengths]
    with torch.no_grad():
        expected = theirs.batch_encode(wavs)
    batch = torch.zeros(2, max(lengths))
    for i, w in enumerate(wavs):
        batch[i, : len(w)] = w
    codes, code_lengths = ours.encode(batch, torch.tensor(lengths))
    assert code_lengths.tolist() == expected.audio_codes_lengths.tolist()
    for i, n in enumerate(code_lengths.tolist()):
        assert torch.equal(codes[i, :, :n], expected.audio_codes[:, i, :n])


def test_decode_matches_upstream_one_shot(pair):
    ours, theirs = pair
    gen = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 1024, (2, 32, 30), generator=gen)
    lengths = torch.tensor([30, 21])
    with torch.no_grad():
        expected = theirs.batch_decode([codes[0], codes[1, :, :21]])
    audio, audio_lengths = ours.decode(codes, lengths, chunk_frames=7)  # chunked on our side
    assert audio_lengths.tolist() == expected.audio_lengths.tolist()
    for i, n in enumerate(audio_lengths.tolist()):
        torch.testing.assert_close(audio[i, :n], expected.audio[i, 0, :n], rtol=1e-4, atol=1e-4)


def test_upstream_chunked_decode_drifts_past_the_context_ours_does_not(pair):
    """Upstream's ring-buffer streaming overwrites keys that early queries of a chunk still need
    once a stream passes one context, so its chunked decode departs from its own one-shot decode;
    ours stays equal to the one-shot result. Recorded here so a change on either side shows."""
    ours, theirs = pair
    gen = torch.Generator().manual_seed(2)
    codes = torch.randint(0, 1024, (32, 1, 30), generator=gen)
    with torch.no_grad():
        one_shot = theirs.decode(codes, return_dict=True).audio[0, 0]
        chunked = theirs.decode(codes, return_dict=True, chunk_duration=0.32).audio[0, 0]  # 4 frames
    context = ours.config.context_frames * SPF
    torch.testing.assert_close(chunked[:context], one_shot[:context], rtol=1e-4, atol=1e-4)
    assert (chunked[context:] - one_shot[context:]).abs().max() > 1e-2
    mine = ours.decode(codes.permute(1, 0, 2), chunk_frames=4).audio[0]
    torch.testing.assert_close(mine, one_shot, rtol=1e-4, atol=1e-4)
