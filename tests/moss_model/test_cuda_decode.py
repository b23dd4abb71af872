"""CUDA graph decoding on a real GPU (skipped where there is none).

CI has no GPU; these run in the device check (`bench/cuda_check.sh`). On CPU the graph
decoder's plumbing is covered by test_generation's stand-in for graph capture.
"""

import pytest
import torch

from moss_model.generation import Generator
from moss_model.loading import load_tts
from moss_model.processor import SpeechRequest
from moss_model.sampling import DecodingParams

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TEXTS = ["Hello there, this is the first request.", "Short.", "A third one, of middling length here."]


@pytest.fixture(scope="module")
def cuda_tts(tiny_model_dir):
    return load_tts(tiny_model_dir, device="cuda")


@pytest.mark.parametrize("decoding", [DecodingParams.greedy(), DecodingParams()], ids=["greedy", "sampled"])
def test_graph_replays_give_the_rows_of_the_same_step_run_eagerly(cuda_tts, decoding):
    """Graph and static decoding launch the same kernels (graph mode records the sampling step
    inside audio too), so their rows agree exactly (eager decoding uses other attention
    kernels: its logits agree to rounding, tested below)."""
    tts = cuda_tts
    prompts = [tts.processor.build_prompt(SpeechRequest(text=t)) for t in TEXTS]
    static = Generator(tts.model, tts.processor, decode_mode="static").generate(prompts, [5, 6, 7], decoding, 60)
    default = Generator(tts.model, tts.processor)
    assert default.decode_mode == "graph" and default.compile_layers  # the CUDA defaults
    graph = Generator(tts.model, tts.processor, compile_layers=False)  # the same kernels as static
    for _ in range(2):  # the second call replays the graphs captured by the first
        results = graph.generate(prompts, [5, 6, 7], decoding, 60)
        for ours, expected in zip(results, static):
            assert torch.equal(ours.rows, expected.rows)
    [engine] = graph._engines.values()
    assert engine.decode_graphs.replays and not engine.decode_graphs.capture_failed
    assert engine.sampling_graphs.replays and not engine.sampling_graphs.capture_failed  # sampling replays too


def test_decode_rows_matches_step_in_bfloat16(tiny_model_dir):
    tts = load_tts(tiny_model_dir, device="cuda", dtype=torch.bfloat16)
    model = tts.model
    prompts = [tts.processor.build_prompt(SpeechRequest(text=t)) for t in TEXTS]
    slot_ids = torch.tensor([model.config.audio_assistant_gen_slot_token_id,
                             model.config.audio_assistant_delay_slot_token_id], device="cuda")
    with torch.inference_mode():
        for prompt in prompts:
            ids = prompt.ids.cuda()[None]
            T = ids.shape[1]
            logits = {}
            for mode in ("eager", "static"):
                cache = model.allocate_cache(1, T + 256)
                key_valid = torch.ones(1, T + 1, dtype=torch.bool, device="cuda")
                positions = torch.arange(T, device="cuda")[None]
                model.hidden_states(ids, positions, key_valid[:, :T], cache, 0)
                row = ids[:, -1:]
                if mode == "eager":
                    logits[mode] = model.step(row, positions[:, -1:] + 1, key_valid, cache, T).audio[:, 0]
                else:
                    slots = torch.tensor([T], device="cuda")
                    logits[mode] = model.step_logits(model.decode_rows(row, slots, cache), slot_ids).audio
            torch.testing.assert_close(logits["static"], logits["eager"], rtol=0.05, atol=0.05)


def test_rms_normalize_in_bfloat16_on_cuda_gives_the_float32_result_rounded_once():
    from moss_model.backbone import rms_normalize

    x = (torch.randn(3, 5, 4096, generator=torch.Generator().manual_seed(0)) * 4).bfloat16().cuda()
    expected = (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)).bfloat16()
    mismatched = (rms_normalize(x, 1e-6) != expected).float().mean().item()
    assert mismatched < 1e-3  # the fused kernel may reduce in another order: a rare last-bit difference


def test_engine_rows_do_not_depend_on_the_schedule_on_cuda(cuda_tts):
    """At one capacity a row's frames are the same whatever else shares the pool and whenever it
    was admitted (every shape is fixed by the engine), in graph mode as in the static step."""
    from moss_model.engine import Engine

    tts = cuda_tts
    voice = torch.randint(0, 1024, (30, tts.config.n_vq), generator=torch.Generator().manual_seed(0))
    texts = TEXTS + ["Call me Ishmael.", "It is a way I have of driving off the spleen."]
    prompts = [tts.processor.build_prompt(SpeechRequest(text=t, reference=[voice] if i % 2 else None))
               for i, t in enumerate(texts)]
    limits = [40, 12, 30, 8, 25]
    results = []
    for mode, order in (("static", [0, 1, 2, 3, 4]), ("graph", [4, 2, 0, 3, 1]), ("graph", [1, 3, 0, 2, 4])):
        engine = Engine(tts.model, tts.processor, 3, max_row_tokens=512, decode_mode=mode, compile_layers=False)
        ids = {engine.submit(prompts[i], 10 + i, DecodingParams(), limits[i]): i for i in order}
        results.append({ids[f.request_id]: f.result.rows for f in engine.run()})
    for other in results[1:]:
        for i in range(len(prompts)):
            assert torch.equal(other[i], results[0][i]), i
