"""The narrator with quality on: the tiny random model's noise is measured, regenerated, re-anchored
and flagged when acting is on, only recorded when it is off; decisions do not depend on the
schedule and a resumed run decides as an uninterrupted one did."""

from __future__ import annotations

import numpy as np
import pytest

from moss_model.codec import load_codec
from moss_model.loading import load_tts
from pipeline.narration.narrate import NarrationOptions, Narrator, RunTask, SegmentTask, embedding_from_facts, segment_seed
from pipeline.narration.store import SegmentStore
from pipeline.narration.voice import Voice
from pipeline.quality import QualityOptions
from pipeline.quality.decisions import HIGH_WER, SIMILARITY_FLOOR

pytestmark = pytest.mark.e2e  # whole narration runs with acting, several times each (about a minute): `make test-e2e`

RATE = 24_000
# Two runs of one chapter and a run of another; the longer lines have enough words to be judged on WER.
RUNS = [(0, 0, ["One.", "Two, and then some more words."]),
        (0, 1, ["A second run of the chapter starts here.", "It ends."]),
        (1, 0, ["Another chapter.", "With a second line, long enough for WER."])]


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    model_dir, codec_dir = tiny_checkpoints
    return load_tts(model_dir), load_codec(codec_dir)


@pytest.fixture(scope="module")
def speech(shared_data) -> np.ndarray:
    """A real English voice: the tiny model's noise is nothing like it."""
    from moss_model.audio_io import load_audio

    path = shared_data / "voices" / "reference_en.m4a"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return load_audio(path, RATE).numpy()


def runs() -> list[RunTask]:
    tasks = []
    for chapter_index, run_index, texts in RUNS:
        segments: list[SegmentTask] = []
        for i, text in enumerate(texts):
            previous = segments[-1] if segments else None
            segments.append(SegmentTask(key=f"c{chapter_index}r{run_index}s{i}k", chapter_index=chapter_index,
                                        segment_index=run_index * 10 + i, model_text=text, est_frames=12,
                                        language="en", previous_key=previous.key if previous else None,
                                        previous_text=previous.model_text if previous else None))
        tasks.append(RunTask(chapter_index, run_index, f"Chapter {chapter_index}", tuple(segments)))
    return tasks


def narrate(models, root, speech, capacity=8, order=None, act=True, wer_sample=1.0, slack=10, attempts=3):
    tts, codec = models
    codes = np.random.default_rng(0).integers(0, 1024, size=(20, tts.config.n_vq)).astype(np.int16)
    quality = QualityOptions(act=act, wer_sample=wer_sample, max_regenerations=attempts - 1)
    # Short frame limits (at most 3.2 s of noise per attempt): PocketSphinx takes ~0.3 CPU-s per second of noise.
    options = NarrationOptions(check_durations=False, capacity=capacity, quality=quality, frames_slack=slack,
                               max_attempts=attempts)
    narrator = Narrator(tts, codec, Voice("ref-test", codes, "A reference sentence."), options, SegmentStore(str(root)))
    narrator.reference_audio = (speech, RATE)
    tasks = runs()
    reports = narrator.narrate([tasks[i] for i in order] if order else tasks)
    return reports, narrator.store


def stored(store) -> dict:
    return {key: store.get(key) for key in sorted(store.keys())}


def test_noise_is_measured_regenerated_reanchored_and_flagged_when_acting(models, tmp_path, speech):
    reports, store = narrate(models, tmp_path / "store", speech)
    segments = stored(store)
    assert len(segments) == sum(len(texts) for *_, texts in RUNS)
    assert sum(r.flagged for r in reports) == len(segments)
    for key, segment in segments.items():
        facts = segment.facts
        assert embedding_from_facts(facts).shape == (256,)
        assert facts["similarity_to_reference"] < 0.65  # noise against a real voice
        first = key.endswith("s0k")
        assert (facts["similarity_to_run"] is None) == first
        assert facts["wer"] is not None and facts["transcript"] is not None  # English, every segment sampled
        assert facts["attempts"] == 3 and facts["seed"] == segment_seed(key, 2)  # regenerated twice, then kept
        assert [a["action"] for a in facts["quality_attempts"]] == ["regenerate", "regenerate", "flag"]
        assert SIMILARITY_FLOOR in facts["quality_flags"]
        if len(facts["text"].split()) >= 4:
            assert HIGH_WER in facts["quality_flags"]
        # Drift: a continuation's retries go without the carried prefix (a run's first has none to drop).
        assert facts["reanchored"] == (not first)
        assert (facts["prefix_key"] is None) == (facts["reanchored"] or first)
        assert facts["quality_attempts"][0]["reanchored"] is False


def test_acting_off_measures_and_records_but_never_regenerates(models, tmp_path, speech):
    reports, store = narrate(models, tmp_path / "store", speech, act=False, slack=50)  # no frame-limit retries
    assert sum(r.attempts for r in reports) == len(store.keys()) and sum(r.flagged for r in reports) == 0
    for segment in stored(store).values():
        facts = segment.facts
        assert facts["attempts"] == 1 and facts["quality_flags"] == [] and facts["reanchored"] is False
        assert facts["similarity_to_reference"] < 0.65 and facts["wer"] is not None
        assert facts["quality_attempts"][0]["action"] == "measured"
        assert SIMILARITY_FLOOR in facts["quality_attempts"][0]["flags"]  # what acting would have done


def test_codes_and_decisions_do_not_depend_on_the_schedule_or_a_resume(models, tmp_path, speech):
    # Half of the segments in the WER sample (chosen by key): sampled and unsampled ones both decide alike.
    _, one = narrate(models, tmp_path / "one", speech, capacity=1, wer_sample=0.5, attempts=2)
    _, eight = narrate(models, tmp_path / "eight", speech, capacity=8, order=[2, 0, 1], wer_sample=0.5, attempts=2)
    expected, got = stored(one), stored(eight)
    assert got.keys() == expected.keys()
    assert 0 < sum(segment.facts["wer"] is not None for segment in expected.values()) < len(expected)
    for key in expected:
        assert np.array_equal(got[key].codes, expected[key].codes), key
        assert got[key].facts == expected[key].facts, key
    # A crash after each run's first segment: the rerun rebuilds each run's state from what is stored.
    for key in expected:
        if not key.endswith("s0k"):
            eight.files.remove(key)
    again, resumed = narrate(models, tmp_path / "eight", speech, capacity=3, wer_sample=0.5, attempts=2)
    assert sum(r.reused for r in again) == len(RUNS)
    for key, segment in stored(resumed).items():
        assert np.array_equal(segment.codes, expected[key].codes), key
        assert segment.facts == expected[key].facts, key
