"""The narrator without Ray: carryover prompts, checks and retries, the segment store."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from moss_model.codec import load_codec
from moss_model.loading import load_tts
from pipeline.narration.narrate import NarrationOptions, Narrator, RunTask, SegmentTask, codes_digest, segment_seed
from pipeline.narration.store import SegmentStore, StoredSegment
from pipeline.narration.voice import Voice


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    model_dir, codec_dir = tiny_checkpoints
    return load_tts(model_dir), load_codec(codec_dir)


def chapter(index: int, texts: list[str], est: int = 30, keys: list[str] | None = None) -> RunTask:
    """A chapter narrated as one run; keys default to unique ones."""
    segments = []
    for i, text in enumerate(texts):
        previous = segments[-1] if segments else None
        segments.append(SegmentTask(key=keys[i] if keys else f"c{index}s{i}k", chapter_index=index, segment_index=i,
                                    model_text=text, est_frames=est, language="en",
                                    previous_key=previous.key if previous else None,
                                    previous_text=previous.model_text if previous else None))
    return RunTask(index, 0, f"Chapter {index}", tuple(segments))


def voice(n_vq: int, with_text: bool) -> Voice:
    codes = np.random.default_rng(0).integers(0, 1024, size=(20, n_vq)).astype(np.int16)
    return Voice("ref-test", codes, "A reference sentence." if with_text else None)


def test_segments_are_stored_with_their_prefix_and_reused(models, tmp_path):
    tts, codec = models
    store = SegmentStore(str(tmp_path / "store"))
    narrator = Narrator(tts, codec, voice(tts.config.n_vq, True), NarrationOptions(check_durations=False), store)
    chapters = [chapter(0, ["One.", "Two.", "Three."]), chapter(1, ["Other one.", "Other two."])]
    reports = narrator.narrate(chapters)
    assert [r.generated for r in reports] == [3, 2] and all(r.reused == 0 for r in reports)
    for c in chapters:
        first = store.get(c.segments[0].key).facts
        assert first["prefix_key"] is None and first["prefix_digest"] == codes_digest(narrator.voice.codes)
        for previous, segment in zip(c.segments, c.segments[1:]):
            facts = store.get(segment.key).facts
            assert facts["prefix_key"] == previous.key
            assert facts["prefix_digest"] == codes_digest(store.get(previous.key).codes)
            assert facts["seed"] == segment_seed(segment.key, 0) and facts["attempts"] == 1
    again = Narrator(tts, codec, narrator.voice, NarrationOptions(check_durations=False), store).narrate(chapters)
    assert [r.reused for r in again] == [3, 2] and all(r.generated == 0 for r in again)


def test_failing_segment_is_retried_with_new_seeds_then_flagged(models, tmp_path):
    tts, codec = models
    store = SegmentStore(str(tmp_path / "store"))
    # No tiny-model segment can be 1000x its estimate: every attempt fails the duration check.
    options = NarrationOptions(check_durations=True, min_duration_ratio=1000.0, max_attempts=2)
    [report] = Narrator(tts, codec, voice(tts.config.n_vq, False), options, store).narrate([chapter(0, ["Hello."])])
    facts = store.get("c0s0k").facts
    assert report.attempts == 2 and report.generated == 1 and report.flagged == 1
    assert facts["attempts"] == 2 and "too_short" in facts["flags"]
    assert facts["seed"] == segment_seed("c0s0k", 1) != segment_seed("c0s0k", 0)


def test_long_previous_segment_is_not_carried(models, tmp_path):
    tts, codec = models
    store = SegmentStore(str(tmp_path / "store"))
    store.put(StoredSegment("c0s0k", np.zeros((50, tts.config.n_vq), np.int16), {}))
    narrator = Narrator(tts, codec, voice(tts.config.n_vq, False), NarrationOptions(carryover_bound_frames=40), store)
    task = chapter(0, ["First.", "Second."]).segments[1]
    request, digest = narrator.request_for(task)
    assert request.prefix_codes is None and digest is None and request.reference is not None
    narrator.options = NarrationOptions(carryover_bound_frames=50)
    request, digest = narrator.request_for(task)
    assert torch.equal(request.prefix_codes, torch.zeros(50, tts.config.n_vq, dtype=torch.long))
    assert request.prefix_text == "First. "


BOOK = [["One.", "Two, and then some more.", "Three.", "Four is the longest of these lines by far."],
        ["Other one.", "Other two, rather longer than the first."],
        ["A third chapter.", "With a second line.", "And a third."],
        ["Fourth."]]


def narrate_book(models, root, capacity, order=None, **options):
    tts, codec = models
    store = SegmentStore(str(root))
    runs = [chapter(i, texts, est=12) for i, texts in enumerate(BOOK)]
    runs = [runs[i] for i in order] if order else runs
    narrator = Narrator(tts, codec, voice(tts.config.n_vq, True),
                        NarrationOptions(check_durations=False, capacity=capacity, **options), store)
    return narrator.narrate(runs), store, narrator


def codes_by_key(store):
    return {key: store.get(key).codes for key in sorted(store.keys())}


def test_stored_codes_do_not_depend_on_capacity_or_order(models, tmp_path):
    _, one, _ = narrate_book(models, tmp_path / "one", capacity=1)
    reports, eight, narrator = narrate_book(models, tmp_path / "eight", capacity=8, order=[3, 1, 0, 2])
    expected = codes_by_key(one)
    assert len(expected) == sum(len(t) for t in BOOK)
    got = codes_by_key(eight)
    assert got.keys() == expected.keys()
    for key in expected:
        assert np.array_equal(got[key], expected[key]), key
    stats = narrator.stats
    assert stats.admissions == sum(r.attempts for r in reports) >= len(expected)  # retries are admissions too
    assert 0 < stats.useful_row_steps <= stats.row_steps


def test_a_rerun_after_losing_segments_gives_the_same_codes(models, tmp_path):
    """The issue's reproduction: narrate, delete every stored segment but each chapter's first, rerun."""
    reports, store, _ = narrate_book(models, tmp_path / "store", capacity=3)
    expected = codes_by_key(store)
    firsts = {f"c{i}s0k" for i in range(len(BOOK))}
    for key in expected:
        if key not in firsts:
            store.files.remove(key)
    again, store, _ = narrate_book(models, tmp_path / "store", capacity=2, order=[2, 0, 3, 1])
    assert sum(r.reused for r in again) == len(firsts) and sum(r.generated for r in again) == len(expected) - len(firsts)
    got = codes_by_key(store)
    for key in expected:
        assert np.array_equal(got[key], expected[key]), key


def test_identical_segments_in_flight_are_generated_once(models, tmp_path):
    """Three chapters open with the same line (same key): one generation, every run goes on."""
    tts, codec = models
    store = SegmentStore(str(tmp_path / "store"))
    runs = [chapter(i, ["Interlude.", f"Then part {i}."], keys=["same", f"c{i}s1k"]) for i in range(3)]
    narrator = Narrator(tts, codec, voice(tts.config.n_vq, False), NarrationOptions(check_durations=False, capacity=4), store)
    reports = narrator.narrate(runs)
    assert store.keys() == {"same", "c0s1k", "c1s1k", "c2s1k"}
    assert narrator.stats.admissions == 4  # "same" once, then each chapter's second segment
    assert [r.generated for r in reports] == [2, 2, 2]
    for i in range(3):
        assert store.get(f"c{i}s1k").facts["prefix_key"] == "same"


def test_store_round_trip_and_atomic_files(tmp_path):
    store = SegmentStore(str(tmp_path / "s"))
    codes = np.arange(64, dtype=np.int16).reshape(2, 32)
    store.put(StoredSegment("abc123", codes, {"text": "héllo", "flags": []}))
    got = store.get("abc123")
    assert np.array_equal(got.codes, codes) and got.facts == {"text": "héllo", "flags": []}
    assert store.keys() == {"abc123"} and store.has("abc123") and not store.has("abc124")
    assert not list((tmp_path / "s").rglob("*.partial"))
    with pytest.raises(ValueError, match="alphanumeric"):
        store.has("../escape")


def test_language_tags_reach_the_prompt_only_when_the_checkpoint_reads_them(models, tmp_path):
    tts, codec = models
    store = SegmentStore(str(tmp_path / "store"))
    run = chapter(0, ["Bonjour.", "Encore."])
    french = RunTask(0, 0, "C", tuple(replace(s, language="fr") for s in run.segments))
    plain = Narrator(tts, codec, voice(tts.config.n_vq, True), NarrationOptions(), store)
    tagged = Narrator(tts, codec, voice(tts.config.n_vq, True), NarrationOptions(language_tags=True), store)
    for segment in french.segments:
        store.put(StoredSegment(segment.key, np.zeros((10, tts.config.n_vq), np.int16), {}))  # a prefix to carry
    for task in french.segments:
        untagged_request, _ = plain.request_for(task)
        tagged_request, _ = tagged.request_for(task)
        assert untagged_request.language is None and tagged_request.language == "French"
        assert "- Language:\nFrench\n" in tts.processor.user_content(tagged_request)
        assert "- Language:\nNone\n" in tts.processor.user_content(untagged_request)
