"""Segment audio decoded where it was narrated: fixed-shape decodes (a segment's audio depends on its
codes alone), exact storage on the grid, the narrator storing what it measured, and finishing reading
it without the codec."""

import numpy as np
import pytest
import torch

from moss_model.codec import load_codec
from moss_model.loading import load_tts
from pipeline.finishing.chapter_audio import chapter_waveform
from pipeline.narration import segment_audio
from pipeline.narration.narrate import NarrationOptions, Narrator, RunTask, SegmentTask
from pipeline.narration.segment_audio import (FRAME_BUCKET, GRID_SCALE, audio_from_flac, audio_to_flac, bucket_frames,
                                              decode_segments, level_dbfs, to_grid)
from pipeline.narration.store import SegmentStore, StoredSegment
from pipeline.narration.voice import Voice


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    model_dir, codec_dir = tiny_checkpoints
    return load_tts(model_dir), load_codec(codec_dir)


def random_codes(frames: int, n_vq: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1024, size=(frames, n_vq)).astype(np.int16)


def test_buckets_round_up_to_whole_buckets():
    assert bucket_frames(1) == FRAME_BUCKET and bucket_frames(FRAME_BUCKET) == FRAME_BUCKET
    assert bucket_frames(FRAME_BUCKET + 1) == 2 * FRAME_BUCKET


def test_a_segments_audio_does_not_depend_on_what_is_decoded_with_it(models, monkeypatch):
    _, codec = models
    n_vq = 32
    segments = [random_codes(f, n_vq, seed) for seed, f in enumerate([30, 70, 45, 64, 3, 100])]
    alone = [decode_segments(codec, [s])[0] for s in segments]
    # A GPU decodes several rows at once; this machine has none, so the row count is raised here
    # to run the same batched path on the CPU.
    monkeypatch.setattr(segment_audio, "decode_rows", lambda device: 4)
    together = decode_segments(codec, segments)
    shuffled = decode_segments(codec, segments[::-1])[::-1]
    for a, b, c, s in zip(alone, together, shuffled, segments):
        assert a.dtype == np.float32 and len(a) == s.shape[0] * codec.samples_per_frame
        assert a.tobytes() == b.tobytes() == c.tobytes()


def test_the_fixed_shape_decode_is_the_codecs_decode_of_the_segment(models):
    _, codec = models
    codes = random_codes(37, 32, 7)
    reference = codec.decode(torch.from_numpy(codes.astype(np.int64)).T[None]).audio[0].numpy()
    [ours] = decode_segments(codec, [codes])
    reference = np.clip(reference, -4.0, 4.0 - 1 / GRID_SCALE)  # random weights overshoot the stored range
    assert np.abs(ours - reference).max() < 1e-4  # the padding never reaches the segment (a causal codec)
    assert decode_segments(codec, [np.zeros((0, 32), np.int16)])[0].size == 0


def test_grid_audio_survives_flac_and_the_store_exactly(tmp_path):
    rng = np.random.default_rng(0)
    audio = to_grid(np.concatenate([rng.normal(0, 0.3, 24_000), [1.7, -2.5, 5.0]]))  # peaks over full scale kept
    assert audio[-3] == np.float32(np.rint(1.7 * GRID_SCALE) / GRID_SCALE) and audio[-1] < 4.0
    back, rate = audio_from_flac(audio_to_flac(audio, 24_000))
    assert rate == 24_000 and back.tobytes() == audio.tobytes()
    store = SegmentStore(str(tmp_path / "store"))
    store.put(StoredSegment("withaudio", random_codes(5, 4, 0), {"text": "x"}, audio=audio, sample_rate=24_000))
    store.put(StoredSegment("codesonly", random_codes(5, 4, 0), {"text": "y"}))
    got = store.get("withaudio")
    assert got.audio.tobytes() == audio.tobytes() and got.sample_rate == 24_000 and got.facts == {"text": "x"}
    assert store.get("codesonly").audio is None
    with pytest.raises(ValueError, match="sample rate"):
        store.put(StoredSegment("norate", random_codes(5, 4, 0), {}, audio=audio))


def test_level_is_the_rms_in_dbfs():
    assert level_dbfs(np.zeros(0, np.float32)) == float("-inf")
    assert abs(level_dbfs(np.full(100, 0.5, np.float32)) - 20 * np.log10(0.5)) < 1e-9


def test_the_narrator_stores_the_audio_it_measured_and_finishing_reads_it_without_the_codec(models, tmp_path):
    tts, codec = models
    n_vq = tts.config.n_vq
    store = SegmentStore(str(tmp_path / "store"))
    voice = Voice("ref-test", random_codes(20, n_vq, 1), "A reference sentence.")
    texts = ["One.", "Two, and more.", "Three."]
    tasks, previous = [], None
    for i, text in enumerate(texts):
        tasks.append(SegmentTask(f"c0s{i}k", 0, i, text, 30, "en", previous.key if previous else None,
                                 previous.model_text if previous else None))
        previous = tasks[-1]
    Narrator(tts, codec, voice, NarrationOptions(check_durations=False), store).narrate([RunTask(0, 0, "C", tuple(tasks))])
    stored = [store.get(t.key) for t in tasks]
    for s in stored:
        assert s.sample_rate == codec.sample_rate
        assert s.audio.tobytes() == decode_segments(codec, [s.codes])[0].tobytes()

    def no_codec():
        raise AssertionError("finishing loaded the codec although every segment has its audio")

    audio, spans = chapter_waveform(stored, no_codec, codec.sample_rate)
    assert audio.tobytes() == np.concatenate([s.audio for s in stored]).tobytes()
    assert spans[0][0] == 0 and spans[-1][1] == len(audio) and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    # A store written without audio (an older version) is decoded here, to the same samples.
    codes_only = [StoredSegment(s.key, s.codes, s.facts) for s in stored]
    again, again_spans = chapter_waveform(codes_only, lambda: codec, codec.sample_rate)
    assert again.tobytes() == audio.tobytes() and again_spans == spans
    with pytest.raises(ValueError, match="Hz"):
        chapter_waveform(stored, no_codec, 44_100)
