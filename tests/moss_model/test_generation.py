"""The batched engine against a naive one-row loop written from the spec, plus seeds and limits."""

import pytest
import torch

from moss_model.engine import Engine
from moss_model.generation import Generator
from moss_model.processor import SpeechRequest
from moss_model.sampling import DecodingParams, RowSamplingParams, SamplingParams, SamplingPlan, gumbel, row_keys, sample_rows, step_keys, uniform
from tests.moss_model.conftest import replay_on_cpu

TEXTS = ["Hello there, this is the first request.", "Short.", "A third one, of middling length here."]


def sample(logits, params, keys, channel):
    """The reference draw for one batch of rows sharing `params`, written from the description in
    moss_model.sampling: greedy, or logits/temperature cut to the top k, then to the top-p mass,
    then the argmax of the values plus Gumbel noise keyed by (row key, channel, token id)."""
    if params.greedy:
        return logits.argmax(dim=-1)
    logits = logits.float() / params.temperature
    vocab = logits.shape[-1]
    if params.top_k and params.top_k < vocab:
        values, ids = torch.topk(logits, params.top_k, dim=-1)
    elif params.top_p < 1.0:
        values, ids = torch.sort(logits, dim=-1, descending=True)
    else:
        ids = torch.arange(vocab).expand_as(logits)
        values = logits
    if params.top_p < 1.0:
        probs = torch.softmax(values, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs
        values = values.masked_fill(before > params.top_p, float("-inf"))
    choice = (values + gumbel(uniform(keys, channel, ids))).argmax(dim=-1, keepdim=True)
    return ids.gather(-1, choice).squeeze(-1)


def naive_generate(model, prompt, seed, decoding, max_steps, max_new_frames):
    """One row, a full forward per step (no cache), the text state machine as scalars.

    Beyond the spec: at max_new_frames the engine forces the delay slot, then <|im_end|>."""
    c = model.config
    n_vq = c.n_vq
    ids = prompt.ids.clone()
    text_ids = ids[:, 0].tolist()
    continuing = text_ids[-1] in (c.audio_start_token_id, c.audio_assistant_gen_slot_token_id)
    in_audio = continuing and c.audio_start_token_id in text_ids
    audio_len = len(text_ids) - (len(text_ids) - 1 - text_ids[::-1].index(c.audio_start_token_id)) if in_audio else 0
    delay = None
    new_frames, forced_close = 0, False
    keys = row_keys(torch.tensor([seed]))
    rows = []
    for step in range(max_steps):
        logits = model(ids[None])
        text_logits = logits.text[:, -1].float().clone()
        if delay is not None and 1 <= delay < n_vq:
            text = c.audio_assistant_delay_slot_token_id
        elif delay == n_vq:
            text = c.audio_end_token_id
            in_audio = False
        elif in_audio:
            pair = text_logits[:, [c.audio_assistant_gen_slot_token_id, c.audio_assistant_delay_slot_token_id]].clone()
            if step == 0:
                pair[:, 1] = float("-inf")
            if new_frames >= max_new_frames - 1:
                pair[:, 0] = float("-inf")
                forced_close = True
            choice = int(sample(pair, decoding.text, step_keys(keys, step), 0))
            text = [c.audio_assistant_gen_slot_token_id, c.audio_assistant_delay_slot_token_id][choice]
        else:
            for banned in (c.pad_token_id, c.audio_assistant_gen_slot_token_id, c.audio_assistant_delay_slot_token_id, c.audio_end_token_id):
                text_logits[:, banned] = float("-inf")
            if step <= n_vq:
                text_logits[:, c.im_end_token_id] = float("-inf")
            text = int(sample(text_logits, decoding.text, step_keys(keys, step), 0))
            if forced_close:
                text = c.im_end_token_id
        audio_logits = logits.audio[:, -1].float().clone()
        sampled = sample(audio_logits, decoding.audio, step_keys(keys, step), torch.arange(n_vq) + 1)[0]
        codes = [int(sampled[k]) if audio_len > k and (delay is None or k >= delay) else c.audio_pad_code for k in range(n_vq)]
        row = torch.tensor([text] + codes)
        rows.append(row)
        ids = torch.cat([ids, row[None]])
        if text == c.audio_start_token_id:
            in_audio = True
        if text in (c.audio_start_token_id, c.audio_assistant_gen_slot_token_id, c.audio_assistant_delay_slot_token_id):
            audio_len += 1
        if text == c.audio_end_token_id:
            audio_len = 0
        if text == c.audio_assistant_gen_slot_token_id or (delay is None and text == c.audio_assistant_delay_slot_token_id):
            new_frames += 1
        if delay is None and text == c.audio_assistant_delay_slot_token_id:
            delay = 0
        if delay is not None:
            delay += 1
            if delay > n_vq:
                delay = None
        if text == c.im_end_token_id:
            break
    return torch.stack(rows)


@pytest.mark.parametrize("decoding", [DecodingParams.greedy(), DecodingParams()], ids=["greedy", "sampled"])
def test_batch_equals_naive_loop_per_row(undecided, decoding):
    tts = undecided
    prompts = [tts.processor.build_prompt(SpeechRequest(text=t)) for t in TEXTS]
    seeds = [11, 22, 33]
    results = tts.generator.generate(prompts, seeds, decoding, max_new_frames=30)
    for prompt, seed, result in zip(prompts, seeds, results):
        steps = result.rows.shape[0]
        expected = naive_generate(tts.model, prompt, seed, decoding, steps, max_new_frames=30)
        assert torch.equal(result.rows, expected)
    assert any(r.finished for r in results), "at least one row should close its audio and stop"


def test_mixed_length_batch_equals_each_row_alone(undecided):
    tts = undecided
    prompts = [tts.processor.build_prompt(SpeechRequest(text=t)) for t in TEXTS]
    for decoding in (DecodingParams.greedy(), DecodingParams()):
        together = tts.generator.generate(prompts, [1, 2, 3], decoding, max_new_frames=30)
        for i, prompt in enumerate(prompts):
            [alone] = tts.generator.generate([prompt], [i + 1], decoding, max_new_frames=30)
            assert torch.equal(alone.rows, together[i].rows)
            assert torch.equal(alone.frames, together[i].frames)


def test_seeds_reproduce_and_differ(tiny_model):
    prompt = tiny_model.processor.build_prompt(SpeechRequest(text="Seeded sampling."))
    a = tiny_model.generator.generate([prompt, prompt], [7, 8], max_new_frames=80)
    b = tiny_model.generator.generate([prompt], [7], max_new_frames=80)
    assert torch.equal(a[0].rows, b[0].rows)
    assert not torch.equal(a[0].rows[: min(len(a[0].rows), len(a[1].rows))], a[1].rows[: min(len(a[0].rows), len(a[1].rows))])


def test_rows_follow_the_delay_pattern_grammar(tiny_model):
    c = tiny_model.config
    prompt = tiny_model.processor.build_prompt(SpeechRequest(text="Grammar check."))
    [result] = tiny_model.generator.generate([prompt], [3], max_new_frames=200)
    assert result.finished
    text = result.rows[:, 0].tolist()
    start = text.index(c.audio_start_token_id)
    first_delay = text.index(c.audio_assistant_delay_slot_token_id)
    assert set(text[start + 1 : first_delay]) <= {c.audio_assistant_gen_slot_token_id}
    assert text[first_delay : first_delay + c.n_vq] == [c.audio_assistant_delay_slot_token_id] * c.n_vq
    assert text[first_delay + c.n_vq] == c.audio_end_token_id
    assert text[-1] == c.im_end_token_id
    audio = result.rows[:, 1:]
    for k in range(c.n_vq):
        column = audio[:, k]
        real = (column != c.audio_pad_code).nonzero().squeeze(1)
        assert int(real[0]) == start + 1 + k and int(real[-1]) == first_delay + k
        assert len(real) == first_delay - start
    assert result.frames.shape == (first_delay - start, c.n_vq)
    assert (result.frames < c.audio_vocab_size).all()


def test_frame_limit_closes_audio_and_is_reported(tiny_model):
    prompt = tiny_model.processor.build_prompt(SpeechRequest(text="Limited."))
    [result] = tiny_model.generator.generate([prompt], [0], DecodingParams.greedy(), max_new_frames=5)
    assert result.hit_frame_limit and result.finished
    assert result.frames.shape[0] == 5


def test_continuation_starts_inside_audio_and_leaves_the_prefix_out(tiny_model):
    c = tiny_model.config
    prefix = torch.randint(0, 1024, (8, c.n_vq), generator=torch.Generator().manual_seed(0))
    prompt = tiny_model.processor.build_prompt(
        SpeechRequest(text=" and more.", prefix_codes=prefix, prefix_text="Said before")
    )
    [result] = tiny_model.generator.generate([prompt], [4], max_new_frames=120)
    text = result.rows[:, 0].tolist()
    assert c.audio_start_token_id not in text[:5]
    assert text[0] in (c.audio_assistant_gen_slot_token_id,)  # the delay slot is forbidden at step 0
    # codebook k of the first new row belongs to prefix frame 8-k: open for k <= 8, pad beyond
    assert (result.rows[0, 1:10] != c.audio_pad_code).all() and (result.rows[0, 10:] == c.audio_pad_code).all()
    first_delay = text.index(c.audio_assistant_delay_slot_token_id)
    assert result.frames.shape[0] == first_delay + 1  # new frames only: gen slots plus the delay-slot row


def sample_all(logits, params, keys):
    rows = RowSamplingParams(logits.shape[0], logits.device)
    for row in range(logits.shape[0]):
        rows.set(row, params[row] if isinstance(params, list) else params)
    plan = SamplingPlan.for_rows(params if isinstance(params, list) else [params], logits.shape[-1])
    return sample_rows(logits, rows, plan, keys, 0)


def test_sampling_respects_top_k_and_top_p():
    logits = torch.tensor([[5.0, 4.0, 3.0, -1.0, -2.0]]).repeat(400, 1)
    keys = step_keys(row_keys(torch.arange(400)), 0)
    picks = sample_all(logits, SamplingParams(temperature=1.0, top_k=2), keys)
    assert set(picks.tolist()) == {0, 1}
    picks = sample_all(logits, SamplingParams(temperature=1.0, top_p=0.5), keys)
    assert set(picks.tolist()) == {0}  # token 0 alone holds over half the mass
    picks = sample_all(logits, SamplingParams(temperature=1.0), keys)
    share = (picks == 0).float().mean().item()
    expected = torch.softmax(logits[0], -1)[0].item()
    assert abs(share - expected) < 0.08


def test_each_row_samples_with_its_own_settings():
    """Rows with other settings in one batch draw what each would draw in a batch of its own kind."""
    logits = torch.randn(6, 40, generator=torch.Generator().manual_seed(0)) * 3
    keys = step_keys(row_keys(torch.arange(6)), 3)
    settings = [SamplingParams(0.0), SamplingParams(1.0, top_k=5), SamplingParams(0.7, top_p=0.6),
                SamplingParams(1.3), SamplingParams(1.0, top_k=12, top_p=0.9), SamplingParams(0.0)]
    together = sample_all(logits, settings, keys)
    for row, params in enumerate(settings):
        assert int(together[row]) == int(sample(logits[row : row + 1], params, keys[row : row + 1], 0)), row


def test_hash_matches_python_reference():
    from moss_model.sampling import fmix32

    def py_fmix32(h):
        h &= 0xFFFFFFFF
        h ^= h >> 16
        h = (h * 0x85EBCA6B) & 0xFFFFFFFF
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & 0xFFFFFFFF
        return h ^ (h >> 16)

    values = [0, 1, 2**31 - 1, 2**31, 2**32 - 1, 123456789, 0xDEADBEEF]
    assert fmix32(torch.tensor(values)).tolist() == [py_fmix32(v) for v in values]


def test_repetition_penalty_lowers_seen_codes(tiny_model):
    prompt = tiny_model.processor.build_prompt(SpeechRequest(text="Penalty."))
    plain = DecodingParams.greedy()
    penalized = DecodingParams(SamplingParams(0.0), SamplingParams(0.0, repetition_penalty=50.0))
    [a] = tiny_model.generator.generate([prompt], [0], plain, max_new_frames=30)
    [b] = tiny_model.generator.generate([prompt], [0], penalized, max_new_frames=30)
    repeats = lambda frames: sum(len(frames[:, k]) - len(set(frames[:, k].tolist())) for k in range(frames.shape[1]))
    assert repeats(b.frames) < repeats(a.frames)


def test_bad_arguments(tiny_model):
    prompt = tiny_model.processor.build_prompt(SpeechRequest(text="x"))
    with pytest.raises(ValueError, match="1 prompts but 2 seeds"):
        tiny_model.generator.generate([prompt], [1, 2])
    with pytest.raises(ValueError, match="max_new_frames"):
        tiny_model.generator.generate([prompt], [1], max_new_frames=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(temperature=1.0, top_p=0.0)


PENALIZED = DecodingParams(audio=SamplingParams(1.0, top_k=25, repetition_penalty=1.3))


def graph_engine(tts, capacity, monkeypatch, compile_layers=False):
    """An engine in graph mode on CPU: the constructor refuses 'graph' without CUDA, and the
    stand-in for capture serves instead."""
    from moss_model import decoders

    monkeypatch.setattr(decoders, "capture_cuda_graph", replay_on_cpu)
    engine = Engine(tts.model, tts.processor, capacity, max_row_tokens=512, decode_mode="static",
                    compile_layers=compile_layers)
    engine.decode_mode = "graph"
    return engine


def run_engine(engine, prompts, seeds, decoding, max_new_frames):
    ids = [engine.submit(p, s, decoding, max_new_frames) for p, s in zip(prompts, seeds)]
    results = {f.request_id: f.result for f in engine.run()}
    return [results[i] for i in ids]


@pytest.mark.parametrize(
    "decoding", [DecodingParams.greedy(), DecodingParams(), PENALIZED], ids=["greedy", "sampled", "penalized"]
)
def test_every_decode_mode_generates_the_same_rows(undecided, decoding, monkeypatch):
    """Graph mode records both the decode step (per window and text-head variant) and the
    sampling step (whose recording runs the step and must leave the row state as it found it)."""
    from moss_model import decoders

    monkeypatch.setattr(decoders, "WINDOW_QUANTUM", 16)  # small windows: the rows cross several
    tts = undecided
    prompts = [tts.processor.build_prompt(SpeechRequest(text=t)) for t in TEXTS]
    prefix = torch.randint(0, 1024, (6, tts.config.n_vq), generator=torch.Generator().manual_seed(1))
    prompts.append(tts.processor.build_prompt(SpeechRequest(text=" and on.", prefix_codes=prefix, prefix_text="Before")))
    seeds = [5, 6, 7, 8]
    eager = Generator(tts.model, tts.processor, decode_mode="eager").generate(prompts, seeds, decoding, 40)
    static = Generator(tts.model, tts.processor, decode_mode="static")
    for _ in range(2):  # the second call reuses the engine (its cache holding the first call's keys)
        for ours, expected in zip(static.generate(prompts, seeds, decoding, 40), eager):
            assert torch.equal(ours.rows, expected.rows)
    assert list(static._engines) == [4]
    engine = graph_engine(tts, 4, monkeypatch)
    for _ in range(2):  # the second run replays the recordings of the first, state buffers reloaded
        for ours, expected in zip(run_engine(engine, prompts, seeds, decoding, 40), eager):
            assert torch.equal(ours.rows, expected.rows)
    windows = set(engine.decode_graphs.replays)
    assert len(windows) >= 3 and all(w % 16 == 0 for w in windows)  # one per 16 slots reached
    text_head_runs = {runs for runs, _, _ in engine.sampling_graphs.replays}
    assert 0 in text_head_runs and 1 in text_head_runs  # inside audio only, and with the text head
    assert not engine.sampling_graphs.capture_failed


def test_engines_are_kept_by_batch_size_and_grow(tiny_model):
    generator = Generator(tiny_model.model, tiny_model.processor, decode_mode="static")
    short = tiny_model.processor.build_prompt(SpeechRequest(text="One."))
    greedy = DecodingParams.greedy()
    generator.generate([short], [1], greedy, max_new_frames=10)
    first = generator._engines[1]
    generator.generate([short], [2], greedy, max_new_frames=12)
    assert generator._engines[1] is first  # it had room: reused
    generator.generate([short, short], [1, 2], greedy, max_new_frames=10)
    generator.generate([short], [1], greedy, max_new_frames=first.max_row_tokens)  # needs longer rows
    assert list(generator._engines) == [2, 1]  # most recently used last
    assert generator._engines[1].max_row_tokens > first.max_row_tokens
    generator.generate([short] * 3, [1, 2, 3], greedy, max_new_frames=10)
    assert list(generator._engines) == [1, 3]  # at most two kept: batch size 2 was dropped


def test_decode_mode_errors(tiny_model):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        Generator(tiny_model.model, tiny_model.processor, decode_mode="graph")
    with pytest.raises(ValueError, match="decode mode must be one of"):
        Generator(tiny_model.model, tiny_model.processor, decode_mode="fast")
    default = Generator(tiny_model.model, tiny_model.processor)
    assert default.decode_mode == "eager" and not default.compile_layers  # CPU defaults


def test_layers_are_compiled_by_default_with_cuda_graphs_only():
    from moss_model.decoders import resolve_compile_layers

    assert resolve_compile_layers(None, "graph") is True
    assert resolve_compile_layers(None, "static") is False and resolve_compile_layers(None, "eager") is False
    assert resolve_compile_layers(False, "graph") is False and resolve_compile_layers(True, "static") is True


def test_compiled_layers_generate_the_same_rows_with_one_compile_for_all_layers(undecided):
    """torch.compile of the layer halves (inductor's CPU backend here; Triton on CUDA)."""
    from torch._dynamo.utils import counters

    tts = undecided
    prompts = [tts.processor.build_prompt(SpeechRequest(text=t)) for t in TEXTS]
    decoding = DecodingParams()
    eager = Generator(tts.model, tts.processor, decode_mode="eager").generate(prompts, [5, 6, 7], decoding, 20)
    graphs_before = counters["stats"]["unique_graphs"]
    compiled = Generator(tts.model, tts.processor, decode_mode="static", compile_layers=True)
    results = compiled.generate(prompts, [5, 6, 7], decoding, 20)
    for ours, expected in zip(results, eager):
        assert torch.equal(ours.rows, expected.rows)
    assert tts.model.config.backbone.num_hidden_layers > 1
    assert counters["stats"]["unique_graphs"] - graphs_before == 2  # each half once, shared by every layer
    with pytest.raises(ValueError, match="compile_layers needs a fixed-shape decode mode"):
        Generator(tts.model, tts.processor, decode_mode="eager", compile_layers=True)


def test_a_failed_graph_capture_falls_back_to_the_fixed_shape_step(tiny_model, monkeypatch):
    from moss_model import decoders

    def capture_fails(step, device, memory_pool=None):  # stands in for a CUDA capture error (no GPU here)
        step()  # after the warm-up runs, as a real capture fails
        raise RuntimeError("operation not permitted when stream is capturing")

    prompt = tiny_model.processor.build_prompt(SpeechRequest(text="Fallback."))
    [expected] = tiny_model.generator.generate([prompt], [3], max_new_frames=30)
    engine = graph_engine(tiny_model, 1, monkeypatch)
    monkeypatch.setattr(decoders, "capture_cuda_graph", capture_fails)
    with pytest.warns(RuntimeWarning, match="CUDA graph capture of the .* failed"):
        [result] = run_engine(engine, [prompt], [3], DecodingParams(), 30)
    assert torch.equal(result.rows, expected.rows)
    for graphs in (engine.decode_graphs, engine.sampling_graphs):
        assert graphs.capture_failed and not graphs.replays


def test_a_failing_layer_compile_falls_back_to_the_plain_step(tiny_model, monkeypatch):
    from moss_model import engine as engine_module
    from moss_model.backbone import EAGER_KERNELS, LayerKernels

    def compile_error(*args):  # stands in for a torch.compile failure (its errors are RuntimeErrors)
        raise RuntimeError("backend compiler failed")

    monkeypatch.setattr(engine_module, "compiled_layer_kernels", lambda: LayerKernels(compile_error, compile_error))
    prompt = tiny_model.processor.build_prompt(SpeechRequest(text="Fallback."))
    [expected] = tiny_model.generator.generate([prompt], [3], max_new_frames=30)
    engine = graph_engine(tiny_model, 1, monkeypatch, compile_layers=True)
    with pytest.warns(RuntimeWarning, match="CUDA graph capture of the decode step failed"):
        [result] = run_engine(engine, [prompt], [3], DecodingParams(), 30)
    assert torch.equal(result.rows, expected.rows)
    assert engine.decode_graphs.capture_failed and engine.kernels is EAGER_KERNELS
