"""Numerical parity with the upstream reference implementation on identical random weights.

The upstream code (OpenMOSS/MOSS-TTS, folder moss_tts_delay/) is not part of this project and
cannot be fetched here, so this test runs only when MOSS_TTS_UPSTREAM names a local checkout:

    MOSS_TTS_UPSTREAM=/path/to/MOSS-TTS make test ARGS=tests/moss_model/test_upstream_parity.py

It imports the upstream classes from that checkout (as plain modules, no trust_remote_code),
fills them with our tiny checkpoint's weights under the released key names (strict load), and
compares input ids, logits and greedy generation.
"""

import os
import sys
from types import SimpleNamespace
from pathlib import Path

import pytest
import torch

from moss_model.loading import load_tts
from moss_model.processor import SpeechRequest
from moss_model.sampling import DecodingParams
from moss_model.tiny import write_tiny_model

UPSTREAM = os.environ.get("MOSS_TTS_UPSTREAM")
pytestmark = pytest.mark.skipif(
    not UPSTREAM or not (Path(UPSTREAM) / "moss_tts_delay").is_dir(),
    reason="set MOSS_TTS_UPSTREAM to a checkout of OpenMOSS/MOSS-TTS to compare with the reference",
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    sys.path.insert(0, UPSTREAM)
    from moss_tts_delay import modeling_moss_tts
    from moss_tts_delay.configuration_moss_tts import MossTTSDelayConfig
    from moss_tts_delay.modeling_moss_tts import MossTTSDelayModel as UpstreamModel
    from moss_tts_delay.processing_moss_tts import MossTTSDelayProcessor as UpstreamProcessor
    from transformers import AutoTokenizer

    # Upstream hard-codes the released delay-slot id (151662) at step 0, so the text vocabulary
    # must reach it.
    folder = write_tiny_model(tmp_path_factory.mktemp("parity") / "tiny", seed=3, text_vocab=151936)
    ours = load_tts(folder)
    data = ours.config.to_dict()
    data.pop("model_type"), data.pop("architectures")
    extra = {k: data.pop(k) for k in list(data) if k not in MossTTSDelayConfig.__init__.__code__.co_varnames}
    upstream_config = MossTTSDelayConfig(**data)
    upstream_config._attn_implementation = "sdpa"
    upstream_config.language_config._attn_implementation = "sdpa"
    # Upstream's output class rejects the `cache` field that transformers 5 returns; give it
    # a plain record with the two fields its generate() reads.
    def output(**fields):
        fields.setdefault("past_key_values", fields.pop("cache", None))
        return SimpleNamespace(**fields)

    modeling_moss_tts.MossTTSDelayOutputWithPast = output
    upstream = UpstreamModel(upstream_config).eval()
    state = {k: v.detach().clone() for k, v in ours.model.checkpoint_tensors().items()}
    upstream.load_state_dict(state, strict=True)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    processor = UpstreamProcessor(tokenizer=tokenizer, model_config=upstream_config)
    return ours, upstream, processor, extra


def codes(frames, seed):
    return torch.randint(0, 1024, (frames, 32), generator=torch.Generator().manual_seed(seed))


def test_same_input_ids_for_generation_cloning_and_continuation(pair):
    ours, _, upstream_processor, _ = pair
    ref, prefix = codes(7, 1), codes(40, 2)
    cases = [
        ("generation", [upstream_processor.build_user_message(text="Hello world.", tokens=40)],
         SpeechRequest(text="Hello world.", tokens=40)),
        ("generation", [upstream_processor.build_user_message(text="Clone me.", reference=[ref], language="English")],
         SpeechRequest(text="Clone me.", reference=[ref], language="English")),
        ("continuation", [upstream_processor.build_user_message(text="Before. After.", reference=[ref]),
                          upstream_processor.build_assistant_message(audio_codes_list=[prefix])],
         SpeechRequest(text="After.", prefix_text="Before. ", reference=[ref], prefix_codes=prefix)),
    ]
    for mode, messages, request in cases:
        expected = upstream_processor([messages], mode=mode)["input_ids"][0]
        got = ours.processor.build_prompt(request).ids
        assert torch.equal(got, expected), mode


def test_same_logits(pair):
    ours, upstream, upstream_processor, _ = pair
    messages = [upstream_processor.build_user_message(text="Logits, please.", reference=[codes(5, 3)])]
    batch = upstream_processor([messages], mode="generation")
    with torch.no_grad():
        expected = upstream(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        got = ours.model(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(got.text, expected[0], rtol=1e-4, atol=1e-4)
    for k in range(32):
        torch.testing.assert_close(got.audio[:, :, k], expected[k + 1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["generation", "continuation"])
def test_same_greedy_generation(pair, mode):
    ours, upstream, upstream_processor, _ = pair
    prefix = codes(12, 4)
    if mode == "generation":
        messages = [upstream_processor.build_user_message(text="Greedy and exact.")]
        request = SpeechRequest(text="Greedy and exact.")
    else:
        messages = [upstream_processor.build_user_message(text="Go on. And on."),
                    upstream_processor.build_assistant_message(audio_codes_list=[prefix])]
        request = SpeechRequest(text="And on.", prefix_text="Go on. ", prefix_codes=prefix)
    batch = upstream_processor([messages], mode=mode)
    steps = 70
    [(start_length, expected_rows)] = upstream.generate(
        batch["input_ids"], batch["attention_mask"], max_new_tokens=steps, text_temperature=0, audio_temperature=0
    )
    generated_expected = expected_rows[start_length:]
    [result] = ours.generator.generate([ours.processor.build_prompt(request)], [0], DecodingParams.greedy(),
                                      max_new_frames=steps + 10)  # our frame limit stays out of the way
    n = min(len(generated_expected), len(result.rows), steps)
    assert n >= 40
    assert torch.equal(result.rows[:n], generated_expected[:n])
