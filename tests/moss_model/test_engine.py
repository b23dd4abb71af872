"""The continuous-batching engine: rows join and leave at any step, and a row's frames never
depend on the schedule (capacity, admission order, what else shares the pool)."""

import math
import random

import pytest
import torch

from moss_model.engine import PREFILL_CHUNK, PREFILL_ROWS, Engine, capacity_for_memory, kv_bytes_per_token, row_bytes
from moss_model.processor import SpeechRequest
from moss_model.sampling import DecodingParams, SamplingParams

TEXTS = [
    "Hello there, this is the first request.",
    "Short.",
    "A third one, of middling length here.",
    "Call me Ishmael.",
    "Some years ago, never mind how long precisely, having little or no money in my purse.",
    "It is a way I have of driving off the spleen.",
]
LIMITS = [30, 12, 25, 8, 30, 18]  # max_new_frames per request


def codes(tts, frames, seed):
    return torch.randint(0, 1024, (frames, tts.config.n_vq), generator=torch.Generator().manual_seed(seed))


def requests(tts):
    """Plain, voice-cloned (a shared head) and continuation requests, each with its own seed and frame limit."""
    voice = codes(tts, 20, seed=1)
    prompts = []
    for i, text in enumerate(TEXTS):
        if i % 3 == 0:
            request = SpeechRequest(text=text)
        elif i % 3 == 1:
            request = SpeechRequest(text=text, reference=[voice])
        else:
            request = SpeechRequest(text=text, reference=[voice], prefix_codes=codes(tts, 6, seed=i), prefix_text="Before. ")
        prompts.append(tts.processor.build_prompt(request))
    return [(prompt, 100 + i, LIMITS[i]) for i, prompt in enumerate(prompts)]


def run(engine, work, decoding, order=None):
    """Submit `work` in `order`, step to the end; results by work index."""
    order = list(range(len(work))) if order is None else order
    ids = {}
    for i in order:
        prompt, seed, limit = work[i]
        ids[engine.submit(prompt, seed, decoding if not isinstance(decoding, list) else decoding[i], limit)] = i
    return {ids[f.request_id]: f.result for f in engine.run()}


@pytest.mark.parametrize("decoding", [DecodingParams.greedy(), DecodingParams()], ids=["greedy", "sampled"])
def test_rows_are_identical_whatever_the_capacity_and_the_admission_order(undecided, decoding):
    tts = undecided
    work = requests(tts)
    expected = tts.generator.generate([w[0] for w in work], [w[1] for w in work], decoding, max_new_frames=30)
    shuffled = list(range(len(work)))
    random.Random(3).shuffle(shuffled)
    for capacity in (1, 3, 8):
        for order, admission in ((None, "fifo"), (shuffled, "fifo"), (shuffled[::-1], "longest_first")):
            engine = Engine(tts.model, tts.processor, capacity, max_row_tokens=512, admission=admission)
            results = run(engine, work, decoding, order)
            assert engine.occupancy == 0 and engine.queued == 0
            for i, (prompt, seed, limit) in enumerate(work):
                [alone] = tts.generator.generate([prompt], [seed], decoding, max_new_frames=limit)
                assert torch.equal(results[i].rows, alone.rows), (capacity, i)
                assert torch.equal(results[i].frames, alone.frames)
                if limit == 30:  # generate() gave every row the same limit: these rows are the same requests
                    assert torch.equal(results[i].rows, expected[i].rows)


def test_rows_with_other_decoding_settings_share_a_pool(undecided):
    tts = undecided
    work = requests(tts)
    settings = [DecodingParams.greedy(), DecodingParams(), DecodingParams(audio=SamplingParams(1.0, top_k=10, repetition_penalty=1.3)),
                DecodingParams(text=SamplingParams(1.0, top_p=0.9), audio=SamplingParams(1.2, top_p=0.7)),
                DecodingParams(), DecodingParams.greedy()]
    together = run(Engine(tts.model, tts.processor, 4, max_row_tokens=512), work, settings)
    for i, (prompt, seed, limit) in enumerate(work):
        [alone] = tts.generator.generate([prompt], [seed], settings[i], max_new_frames=limit)
        assert torch.equal(together[i].rows, alone.rows), i


def test_each_row_keeps_its_own_frame_limit(tiny_model):
    """The tiny model never closes audio by itself under greedy decoding: every row runs to its own limit."""
    tts = tiny_model
    limits = [3, 9, 14, 5]
    prompt = tts.processor.build_prompt(SpeechRequest(text="Limited."))
    engine = Engine(tts.model, tts.processor, 2, max_row_tokens=512)
    ids = [engine.submit(prompt, i, DecodingParams.greedy(), limit) for i, limit in enumerate(limits)]
    results = {f.request_id: f.result for f in engine.run()}
    for request_id, limit in zip(ids, limits):
        result = results[request_id]
        assert result.hit_frame_limit and result.finished
        assert result.frames.shape[0] == limit


def test_a_row_closed_by_its_frame_limit_skips_the_text_head(tiny_model):
    """Its text after the audio is a forced <|im_end|>: the whole text head runs only for its first row."""
    tts = tiny_model
    c = tts.config
    prompt = tts.processor.build_prompt(SpeechRequest(text="Limited."))
    engine = Engine(tts.model, tts.processor, 2, max_row_tokens=512, free_text_rows=8)
    engine.submit(prompt, 1, DecodingParams.greedy(), 6)
    [finished] = list(engine.run())
    text = finished.result.rows[:, 0]
    assert finished.result.hit_frame_limit and int(text[0]) == c.audio_start_token_id
    assert int(text[-2]) == c.audio_end_token_id and int(text[-1]) == c.im_end_token_id
    assert engine.stats.text_head_rows == 8  # one run, for the row before <|audio_start|>


def test_a_running_pool_admits_whole_groups_and_rows_do_not_change(undecided):
    """Capacity 16 admits two at a time once running (an eighth of the pool); every prompt is
    prefilled in a group of four, so its KV never depends on what was prefilled beside it."""
    tts = undecided
    base = requests(tts)
    work = [(prompt, seed + 10 * k, max(4, limit - 3 * k)) for k in range(4) for prompt, seed, limit in base]
    engine = Engine(tts.model, tts.processor, 16, max_row_tokens=512, prefill_rows=4)
    assert engine.admission_group == 2
    ids = {engine.submit(prompt, seed, DecodingParams(), limit): i for i, (prompt, seed, limit) in enumerate(work)}
    together, admitted = {}, []
    while engine.busy:
        before = engine.stats.admissions
        for f in engine.step():
            together[ids[f.request_id]] = f.result
        admitted.append(engine.stats.admissions - before)
    assert admitted[0] == 16 and engine.stats.admissions == len(work)
    later = [n for n in admitted[1:] if n]
    assert later and all(n >= 2 for n in later[:-1])  # the last group may be what was left
    alone = run(Engine(tts.model, tts.processor, 1, max_row_tokens=512), work, DecodingParams())
    for i in range(len(work)):
        assert torch.equal(together[i].rows, alone[i].rows), i


def test_rows_leave_at_once_and_queued_requests_take_their_slots(tiny_model):
    tts = tiny_model  # greedy rows run to their frame limits
    prompt = tts.processor.build_prompt(SpeechRequest(text="Turns."))
    engine = Engine(tts.model, tts.processor, 2, max_row_tokens=512)
    greedy = DecodingParams.greedy()
    long_id = engine.submit(prompt, 1, greedy, max_new_frames=120)  # about 150 steps; a short one about 36
    short_ids = [engine.submit(prompt, 2 + i, greedy, max_new_frames=2) for i in range(3)]
    order, occupancy = [], []
    while engine.busy:
        order += [f.request_id for f in engine.step()]
        occupancy.append(engine.occupancy)
    assert order[-1] == long_id and order[:3] == short_ids  # the short ones came and went while it ran
    assert max(occupancy) == 2
    stats = engine.stats
    assert stats.admissions == 4 and stats.steps == len(occupancy)
    assert stats.row_steps == 2 * stats.steps
    rows = sum(len(r.rows) for r in run(Engine(tts.model, tts.processor, 1, max_row_tokens=512),
                                         [(prompt, 1, 120)] + [(prompt, 2 + i, 2) for i in range(3)], greedy).values())
    assert stats.useful_row_steps == rows  # one useful row-step per generated row
    assert stats.useful_fraction > 0.5


def test_attention_counts_the_slots_each_row_needs_and_the_slots_the_pool_spans(tiny_model):
    tts = tiny_model  # greedy rows run to their frame limits
    work = [(tts.processor.build_prompt(SpeechRequest(text=text)), 1 + i, limit)
            for i, (text, limit) in enumerate([("A long one to start with, and then some more.", 40), ("Short.", 2),
                                               ("Middling, this one.", 10)])]

    def needed(prompt, rows: int) -> int:  # the decode after each row but the last attends to slots 0..T+k
        T = prompt.ids.shape[0]
        return sum(T + k + 1 for k in range(rows - 1))

    alone = Engine(tts.model, tts.processor, 1, max_row_tokens=512)  # eager: the window is the row's length
    results = run(alone, work, DecodingParams.greedy())
    total = sum(needed(prompt, len(results[i].rows)) for i, (prompt, _, _) in enumerate(work))
    assert alone.stats.attention_slots_used == alone.stats.attention_slots == total
    pool = Engine(tts.model, tts.processor, 2, max_row_tokens=512)
    run(pool, work, DecodingParams.greedy())
    assert pool.stats.attention_slots_used == total  # what the rows need does not depend on the schedule
    assert pool.stats.attention_slots > total  # every row spans the longest row's window
    fixed = Engine(tts.model, tts.processor, 1, max_row_tokens=512, decode_mode="static")
    run(fixed, work, DecodingParams.greedy())
    assert fixed.stats.attention_slots_used == total and fixed.stats.attention_slots > total  # whole windows
    assert 0 < pool.stats.attention_used_fraction < 1


def test_longest_first_admission(tiny_model):
    tts = tiny_model
    prompt = tts.processor.build_prompt(SpeechRequest(text="Order."))
    engine = Engine(tts.model, tts.processor, 1, max_row_tokens=512, admission="longest_first")
    ids = [engine.submit(prompt, i, DecodingParams.greedy(), limit) for i, limit in enumerate([3, 9, 5, 9])]
    order = [f.request_id for f in engine.run()]
    assert order == [ids[1], ids[3], ids[2], ids[0]]  # the longest first; ties in the order of submission
    with pytest.raises(ValueError, match="admission must be one of fifo, longest_first"):
        Engine(tts.model, tts.processor, 1, admission="random")


def test_a_prefix_cache_hit_gives_the_logits_of_a_full_prefill(tiny_model):
    tts = tiny_model
    voice = codes(tts, 150, seed=2)  # a shared head longer than one prefill chunk
    first, second = (tts.processor.build_prompt(SpeechRequest(text=t, reference=[voice])) for t in ("One.", "Two, and more."))
    L = first.shared_length
    assert L == second.shared_length and torch.equal(first.ids[:L], second.ids[:L]) and L > 128
    assert first.ids.shape[0] != second.ids.shape[0]  # the rest (template fields, then the text) differs

    warm = Engine(tts.model, tts.processor, 2, max_row_tokens=1024)
    warm.submit(first, 1, max_new_frames=5)
    warm.submit(second, 2, max_new_frames=5)
    warm._admit()
    assert warm.stats.prefix_cache_tokens == L  # the second request reused the first one's head
    assert warm.stats.prefill_tokens == first.ids.shape[0] + second.ids.shape[0] - L
    # The head alone in whole chunks of one row, then both rests together in chunks of prefill_rows rows.
    rest_chunks = math.ceil((max(first.ids.shape[0], second.ids.shape[0]) - L) / PREFILL_CHUNK)
    assert warm.stats.prefill_positions == (math.ceil(L / PREFILL_CHUNK) + PREFILL_ROWS * rest_chunks) * PREFILL_CHUNK
    cold = Engine(tts.model, tts.processor, 1, max_row_tokens=1024)
    cold.submit(second, 2, max_new_frames=5)
    cold._admit()
    assert cold.stats.prefix_cache_tokens == 0
    assert torch.equal(warm.hidden[1], cold.hidden[0])  # the whole text head is computed from it
    for name in ("slots", "audio"):
        assert torch.equal(getattr(warm.logits, name)[1], getattr(cold.logits, name)[0]), name
    T = second.ids.shape[0]
    assert torch.equal(warm.cache.keys[:, 1, :, :T], cold.cache.keys[:, 0, :, :T])
    with torch.no_grad():
        full = tts.model(second.ids[None])  # one forward over the whole prompt, no cache, no chunks
    text = tts.model.free_text_logits(warm.hidden[1:2])[0]
    torch.testing.assert_close(text, full.text[0, -1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(warm.logits.audio[1], full.audio[0, -1], rtol=1e-4, atol=1e-4)


def test_a_request_longer_than_the_rows_is_a_clear_error(tiny_model):
    tts = tiny_model
    engine = Engine(tts.model, tts.processor, 2, max_row_tokens=256)
    prompt = tts.processor.build_prompt(SpeechRequest(text="Too long for this pool."))
    with pytest.raises(ValueError, match=r"needs \d+ KV slots .* rows hold 256: build the Engine with max_row_tokens >= \d+"):
        engine.submit(prompt, 1, max_new_frames=400)
    assert not engine.busy  # nothing was queued, and the engine still serves
    engine.submit(prompt, 1, DecodingParams.greedy(), max_new_frames=4)
    [finished] = list(engine.run())
    assert finished.result.frames.shape[0] <= 4


def test_checking_less_often_gives_the_same_rows(undecided):
    tts = undecided
    work = requests(tts)
    every = run(Engine(tts.model, tts.processor, 3, max_row_tokens=512), work, DecodingParams())
    sparse_engine = Engine(tts.model, tts.processor, 3, max_row_tokens=512, check_every=7)
    sparse = run(sparse_engine, work, DecodingParams())
    for i in every:
        assert torch.equal(every[i].rows, sparse[i].rows)
    assert sparse_engine.stats.host_checks < sparse_engine.stats.steps / 5


def test_capacity_from_a_memory_budget(tiny_model):
    model = tiny_model.model
    per_row = row_bytes(model, 512)
    scratch = 4 * kv_bytes_per_token(model) * 512  # the KV of 4 prompts being prefilled
    assert capacity_for_memory(model, 512, 10 * per_row + scratch + 1, prefill_rows=4) == 10
    assert capacity_for_memory(model, 512, 10 * per_row + 1, prefill_rows=4) == 9
    assert capacity_for_memory(model, 512, 1) == 1
    engine = Engine(model, tiny_model.processor, memory_budget_bytes=5 * per_row + scratch, max_row_tokens=512,
                    prefill_rows=4)
    assert engine.capacity == 5
    assert engine.cache.keys.shape[1] == 5 and engine.cache.capacity == 512
    with pytest.raises(ValueError, match="capacity must be at least 1"):
        Engine(model, tiny_model.processor, 0)


def test_the_text_head_group_size_does_not_change_rows(undecided):
    """The whole text head runs for the rows that may sample free text, a fixed number at a time
    (8 by default, whatever the capacity); groups padded past the pool compute a row twice."""
    tts = undecided
    work = requests(tts)
    results = [run(Engine(tts.model, tts.processor, 5, max_row_tokens=512, free_text_rows=size), work, DecodingParams())
               for size in (1, 3, 8)]
    for other in results[1:]:
        for i in range(len(work)):
            assert torch.equal(other[i].rows, results[0][i].rows), i


def test_stats_count_afresh_after_a_reset(tiny_model):
    tts = tiny_model
    prompt = tts.processor.build_prompt(SpeechRequest(text="Counted."))
    engine = Engine(tts.model, tts.processor, 2, max_row_tokens=512)
    for _ in range(2):
        engine.reset_stats()
        engine.submit(prompt, 1, DecodingParams.greedy(), 6)
        [finished] = list(engine.run())
        assert engine.stats.useful_row_steps == len(finished.result.rows) and engine.stats.admissions == 1
