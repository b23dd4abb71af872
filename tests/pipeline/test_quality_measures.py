"""Quality measures without audio: WER, the run's similarity state, and the decision function."""

import numpy as np
import pytest

from pipeline.quality import (FLAG, OK, REGENERATE, Distribution, QualityOptions, RunSimilarity, SegmentMeasures,
                              Spread, cosine_similarity, decide, edit_distance, normalize_words, word_error_rate)
from pipeline.quality.decisions import (HIGH_WER, RUN_SIMILARITY_FLOOR, RUN_SIMILARITY_OUTLIER, SIMILARITY_FLOOR,
                                        SIMILARITY_OUTLIER)


# --- WER ---------------------------------------------------------------------------------


def test_words_are_lowercased_and_stripped_of_punctuation_keeping_inner_apostrophes_and_numbers():
    assert normalize_words("But I really can\u2019t complain, to you.") == ["but", "i", "really", "can't", "complain", "to", "you"]
    assert normalize_words("In 1851 \u2014 well-known \u201cMoby-Dick\u201d at 3.5 or 1,000!") == [
        "in", "1851", "well", "known", "moby", "dick", "at", "3.5", "or", "1,000"]
    assert normalize_words("the 2nd and 4th, 'quoted' ... ___") == ["the", "2nd", "and", "4th", "quoted"]
    assert normalize_words("\u00dcber STRASSE") == ["über", "strasse"]


def test_edit_distance_counts_substitutions_deletions_and_insertions():
    assert edit_distance([], []) == 0
    assert edit_distance(["a", "b", "c"], ["a", "b", "c"]) == 0
    assert edit_distance(["a", "b", "c"], ["a", "x", "c"]) == 1  # substitution
    assert edit_distance(["a", "b", "c"], ["a", "c"]) == 1  # deletion
    assert edit_distance(["a", "b", "c"], ["a", "b", "b", "c"]) == 1  # insertion
    assert edit_distance(["a", "b"], []) == 2 and edit_distance([], ["a", "b"]) == 2
    assert edit_distance(["a", "b", "c", "d"], ["b", "c", "d", "a"]) == 2


def test_edit_distance_equals_a_naive_recursion():
    from functools import lru_cache

    rng = np.random.default_rng(0)
    for _ in range(50):
        ref = tuple(rng.choice(list("abc"), size=rng.integers(0, 7)))
        hyp = tuple(rng.choice(list("abc"), size=rng.integers(0, 7)))

        @lru_cache(maxsize=None)
        def naive(i: int, j: int) -> int:
            if i == 0 or j == 0:
                return i + j
            return min(naive(i - 1, j) + 1, naive(i, j - 1) + 1, naive(i - 1, j - 1) + (ref[i - 1] != hyp[j - 1]))

        assert edit_distance(ref, hyp) == naive(len(ref), len(hyp))


def test_word_error_rate_is_edits_per_reference_word_after_normalizing():
    text = "But I really can't complain about not having a normal college experience to you."
    assert word_error_rate(text, text.upper().replace(".", "")) == 0.0
    heard = "but i really can't complain about not having a normal college experience eu"
    assert word_error_rate(text, heard) == pytest.approx(2 / 14)  # "to you" -> "eu"
    assert word_error_rate("one two", "one two three four") == pytest.approx(1.0)  # insertions count
    assert word_error_rate("one two", "") == 1.0
    assert word_error_rate("", "anything") is None and word_error_rate("...", "") is None
    assert word_error_rate("It was 1851.", "it was eighteen fifty one") == pytest.approx(3 / 3)  # numbers as written


# --- the run's similarity state ----------------------------------------------------------


def random_units(n: int, seed: int) -> np.ndarray:
    vectors = np.abs(np.random.default_rng(seed).standard_normal((n, 256))).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_segment_is_compared_with_its_runs_earlier_segments_only_whatever_the_schedule():
    reference = random_units(1, 0)[0]
    runs = {run: random_units(6, run + 1) for run in range(3)}

    def values(order: list[tuple[int, int]]) -> dict[tuple[int, int], tuple]:
        states = {run: RunSimilarity(reference) for run in runs}
        out = {}
        for run, k in order:
            measured = states[run].measure(k, runs[run][k])
            assert states[run].measure(k, runs[run][k]) == measured  # measuring again (a retry) changes nothing
            out[run, k] = (measured, states[run].accept(k, runs[run][k]))
        return out

    one_by_one = values([(run, k) for run in runs for k in range(6)])
    interleaved = values([(run, k) for k in range(6) for run in reversed(runs)])
    assert one_by_one == interleaved
    first, second = one_by_one[0, 0][0], one_by_one[0, 1][0]
    assert first.to_run is None and first.to_reference == pytest.approx(float(cosine_similarity(runs[0][0], reference)))
    assert second.to_run == pytest.approx(float(cosine_similarity(runs[0][1], runs[0][0])))
    mean = runs[0][:3].mean(axis=0)
    assert one_by_one[0, 3][0].to_run == pytest.approx(float(cosine_similarity(runs[0][3], mean)), abs=1e-6)


def test_a_run_is_measured_in_order_and_its_spreads_are_of_accepted_segments():
    state = RunSimilarity(None)
    vectors = random_units(3, 5)
    with pytest.raises(ValueError, match="in order"):
        state.measure(1, vectors[1])
    state.accept(0, vectors[0])
    assert state.measure(1, vectors[1]).to_reference is None  # no reference (a generated voice)
    state.accept(1, vectors[1])
    with pytest.raises(ValueError, match="in order"):
        state.accept(1, vectors[1])
    to_reference, to_run = state.spreads()
    assert to_reference is None and to_run.count == 1


def test_spread_is_median_and_mad_ignoring_missing_values():
    spread = Spread.of([0.8, 0.9, 0.85, None, float("nan"), 0.1])
    assert spread.count == 4 and spread.median == pytest.approx(0.825) and spread.mad == pytest.approx(0.05)
    assert Spread.of([]) is None


# --- decisions ---------------------------------------------------------------------------


BOOK = Distribution(to_reference=Spread(0.85, 0.02, 100), to_run=Spread(0.93, 0.01, 100))


def test_good_segments_pass_and_a_segment_below_the_floor_is_regenerated_re_anchored_then_flagged():
    options = QualityOptions()
    good = SegmentMeasures(similarity_to_reference=0.84, similarity_to_run=0.92, wer=0.1, words=12)
    assert decide(good, BOOK, options) == decide(good, None, options)
    assert decide(good, BOOK, options).action == OK
    noise = SegmentMeasures(similarity_to_reference=0.45, similarity_to_run=0.5, wer=1.0, words=12, transcript="")
    first = decide(noise, BOOK, options, attempt=1)
    assert first.action == REGENERATE and first.reanchor
    assert first.flags == (SIMILARITY_FLOOR, RUN_SIMILARITY_FLOOR, HIGH_WER)
    assert "0.450 < 0.650" in first.reasons[0] and "heard: ''" in first.reasons[2]
    assert decide(noise, BOOK, options, attempt=options.max_regenerations).action == REGENERATE
    last = decide(noise, BOOK, options, attempt=options.max_regenerations + 1)
    assert last.action == FLAG and not last.reanchor and last.flags == first.flags


def test_the_relative_rule_follows_the_books_distribution():
    options = QualityOptions(similarity_mads=4.0, min_similarity_margin=0.05)
    # 0.85 - max(4 * 0.02, 0.05) = 0.77: above the floor, below the book's own spread
    dip = SegmentMeasures(similarity_to_reference=0.75, similarity_to_run=0.92)
    decision = decide(dip, BOOK, options)
    assert decision.flags == (SIMILARITY_OUTLIER,) and decision.reanchor and "median 0.850" in decision.reasons[0]
    assert decide(SegmentMeasures(similarity_to_reference=0.78), BOOK, options).action == OK
    assert decide(dip, None, options).action == OK  # no distribution yet: only the floors apply
    few = Distribution(to_reference=Spread(0.85, 0.02, options.min_history - 1))
    assert decide(dip, few, options).action == OK
    tight = Distribution(to_run=Spread(0.95, 0.001, 50))  # MAD tiny: the margin keeps 0.93 in
    assert decide(SegmentMeasures(similarity_to_run=0.93), tight, options).action == OK
    assert decide(SegmentMeasures(similarity_to_run=0.89), tight, options).flags == (RUN_SIMILARITY_OUTLIER,)


def test_wer_is_judged_only_with_enough_words_and_a_wer_failure_alone_does_not_re_anchor():
    options = QualityOptions(max_wer=0.3, min_wer_words=4)
    decision = decide(SegmentMeasures(wer=0.5, words=10), None, options)
    assert decision.action == REGENERATE and decision.flags == (HIGH_WER,) and not decision.reanchor
    assert decide(SegmentMeasures(wer=1.0, words=3), None, options).action == OK
    assert decide(SegmentMeasures(wer=0.3, words=10), None, options).action == OK
    assert decide(SegmentMeasures(wer=None, words=10), None, options).action == OK  # not measured (language)


def test_each_measure_has_an_off_switch():
    noise = SegmentMeasures(similarity_to_reference=0.2, similarity_to_run=0.2, wer=1.0, words=10)
    assert decide(noise, BOOK, QualityOptions(similarity=False)).flags == (HIGH_WER,)
    assert decide(noise, BOOK, QualityOptions(wer=False)).flags == (SIMILARITY_FLOOR, RUN_SIMILARITY_FLOOR)
    assert decide(noise, BOOK, QualityOptions(similarity=False, wer=False)).action == OK
    assert decide(noise, BOOK, QualityOptions(max_regenerations=0)).action == FLAG


def test_options_are_checked():
    with pytest.raises(ValueError, match="pocketsphinx, whisper"):
        QualityOptions(asr="vosk")
    with pytest.raises(ValueError, match="asr_path"):
        QualityOptions(asr="whisper")
    with pytest.raises(ValueError, match="max_wer"):
        QualityOptions(max_wer=-1)


# --- the measurer, with a stand-in recognizer ----------------------------------------------


class EchoASR:
    """Hears English only, and hears each audio's first sample as the index of a transcript."""

    name = "echo"

    def __init__(self, heard: list[str]) -> None:
        self.heard = heard
        self.calls: list[tuple[str, int]] = []

    def transcribe(self, audio_batch, sample_rate, language):
        self.calls.append((language, len(audio_batch)))
        if language != "en":
            return None
        return [self.heard[int(audio[0])] for audio in audio_batch]


def test_the_measurer_batches_per_language_and_measures_what_it_can():
    from pipeline.quality import QualityMeasurer

    heard = ["call me ishmael", "some years ago never mind", "x"]
    asr = EchoASR(heard)
    measurer = QualityMeasurer(QualityOptions(similarity=False), asr=asr)
    assert measurer.encoder is None and measurer.reference_embedding(np.ones(100), 24_000) is None
    audios = [np.full(10, i, np.float32) for i in range(3)] + [np.zeros(10, np.float32)]
    texts = ["Call me Ishmael.", "Some years ago, never mind how long", "\u592a\u9633\u7cfb", "..."]
    measured = measurer.measure(audios, 24_000, texts, ["en", "en", "zh", "en"])
    assert sorted(asr.calls) == [("en", 2), ("zh", 1)]  # one batch per language; no words, no transcription
    assert [m.wer for m in measured] == [0.0, pytest.approx(2 / 7), None, None]
    assert [m.words for m in measured] == [3, 7, 1, 0]
    assert measured[1].transcript == heard[1] and measured[2].transcript is None
    assert all(m.embedding is None for m in measured)
    assert measured[0].with_run(None, 0).similarity_to_reference is None
    with pytest.raises(ValueError, match="3 texts"):
        measurer.measure(audios, 24_000, texts[:3], ["en"] * 4)


def test_the_wer_sample_is_chosen_by_key_whatever_the_batch():
    from pipeline.quality import QualityMeasurer
    from pipeline.quality.measures import wer_sampled

    keys = [f"segment-{i}" for i in range(2000)]
    chosen = [k for k in keys if wer_sampled(k, 0.25)]
    assert 400 < len(chosen) < 600 and all(wer_sampled(k, 1.0) for k in keys) and not any(wer_sampled(k, 0.0) for k in keys)
    assert set(chosen) <= {k for k in keys if wer_sampled(k, 0.5)}  # a larger sample holds a smaller one
    measurer = QualityMeasurer(QualityOptions(similarity=False, wer_sample=0.25), asr=EchoASR(["a b c"]))
    audios, texts = [np.zeros(10, np.float32)] * 40, ["a b c"] * 40
    together = measurer.measure(audios, 24_000, texts, ["en"] * 40, keys=keys[:40])
    alone = [measurer.measure(audios[:1], 24_000, texts[:1], ["en"], keys=[k])[0] for k in keys[:40]]
    assert [m.wer for m in together] == [m.wer for m in alone] == [0.0 if k in chosen else None for k in keys[:40]]
