"""Stitching: exact silences, spans, fades only at cuts over signal, pause markers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.finishing.stitch import (
    BOUNDARY_KINDS,
    PauseOptions,
    TextPiece,
    pause_samples,
    seconds_to_samples,
    split_pause_markers,
    stitch,
    strip_pause_markers,
)


def naive_stitch(audio, spans, pauses, lead_in):
    """Reference without fades: concatenate pieces and zero runs."""
    parts = [np.zeros(lead_in, np.float32)]
    for (start, end), pause in zip(spans, pauses):
        parts += [audio[start:end].astype(np.float32), np.zeros(pause, np.float32)]
    return np.concatenate(parts)


def zero_runs(x: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each maximal run of exact zeros."""
    is_zero = np.concatenate([[False], x == 0, [False]])
    edges = np.flatnonzero(np.diff(is_zero.astype(np.int8)))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2])]


def test_pauses_are_exact_to_the_sample_and_spans_point_at_the_segments():
    rng = np.random.default_rng(0)
    audio = (0.2 + 0.1 * rng.random(24_000)).astype(np.float32)  # never zero
    spans = [(0, 5_000), (5_000, 11_111), (11_111, 17_000), (17_000, 24_000)]
    options = PauseOptions(sentence_s=0.45, paragraph_s=1.0, chapter_s=2.0, clause_s=0.2, lead_in_s=0.5)
    pauses = pause_samples(["sentence", "clause", "paragraph", "chapter"], [None, None, 0.3337, None], options)
    assert pauses.tolist() == [10_800, 4_800, 8_009, 48_000]  # 0.3337 s -> 8008.8 -> 8009 samples

    result = stitch(audio, spans, pauses, lead_in=12_000, fade_samples=120)

    runs = zero_runs(result.audio)
    assert runs == [(0, 12_000)] + [(int(e), int(p)) for (_, e), p in zip(result.spans, pauses)]
    assert len(result.audio) == 12_000 + 24_000 + int(pauses.sum())
    for (start, end), (out_start, out_end) in zip(spans, result.spans):
        assert out_end - out_start == end - start
        # beyond the fades the samples are copied unchanged
        np.testing.assert_array_equal(result.audio[out_start + 120:out_end - 120], audio[start + 120:end - 120])


def test_fades_only_at_cuts_over_signal():
    audio = np.full(4_000, 0.5, dtype=np.float32)
    audio[2_000:2_200] = 0.0  # the second segment starts on silence: no fade there
    spans = [(0, 2_000), (2_000, 3_000), (3_000, 4_000)]
    result = stitch(audio, spans, [100, 0, 100], lead_in=0, fade_samples=120)
    out = result.audio
    (a0, a1), (b0, b1), (c0, c1) = result.spans.tolist()
    # first segment: fade in at the very start, fade out before the pause
    assert 0 < out[0] < 0.01 and np.all(np.diff(out[:120]) > 0) and out[120] == 0.5
    assert 0 < out[a1 - 1] < 0.01 and np.all(np.diff(out[a1 - 120:a1]) < 0)
    # second segment starts on exact silence: untouched
    np.testing.assert_array_equal(out[b0:b0 + 200], 0.0)
    # the second and third segments are contiguous with no pause: no cut, no fade
    np.testing.assert_array_equal(out[b1 - 300:c0 + 300], 0.5)
    assert out[c1 - 1] < 0.01  # end of the chapter is a cut


def test_no_fade_when_the_cut_is_near_zero():
    audio = np.zeros(1_000, dtype=np.float32)
    audio[300:700] = 0.3
    audio[:300] = 1e-4  # -80 dBFS: below the near-zero threshold, left as is
    result = stitch(audio, [(0, 1_000)], [50], lead_in=10)
    np.testing.assert_array_equal(result.audio[10:1_010], audio)


def test_short_segments_fade_over_at_most_half_their_length():
    audio = np.full(10, 0.5, dtype=np.float32)
    result = stitch(audio, [(0, 10)], [0], fade_samples=120)
    assert np.all(result.audio > 0) and np.all(result.audio < 0.5)
    np.testing.assert_allclose(result.audio, result.audio[::-1], rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 300), min_size=1, max_size=8),
    gaps=st.lists(st.integers(0, 40), min_size=8, max_size=8),
    pauses=st.lists(st.integers(0, 500), min_size=8, max_size=8),
    lead_in=st.integers(0, 100),
)
def test_stitch_matches_a_naive_concatenation(lengths, gaps, pauses, lead_in):
    spans = []
    position = 0
    for length, gap in zip(lengths, gaps):
        position += gap
        spans.append((position, position + length))
        position += length
    audio = np.random.default_rng(len(lengths)).uniform(-1, 1, position + 5).astype(np.float32)
    pauses = pauses[: len(spans)]
    result = stitch(audio, spans, pauses, lead_in=lead_in, fade_samples=0)
    np.testing.assert_array_equal(result.audio, naive_stitch(audio, spans, pauses, lead_in))
    for (start, end), (out_start, out_end) in zip(spans, result.spans):
        np.testing.assert_array_equal(result.audio[out_start:out_end], audio[start:end])


def test_no_segments_gives_the_lead_in_only():
    result = stitch(np.ones(10, np.float32), [], [], lead_in=7)
    assert len(result.audio) == 7 and not result.audio.any() and result.spans.shape == (0, 2)


def test_bad_spans_and_kinds_are_reported():
    audio = np.zeros(100, np.float32)
    with pytest.raises(ValueError, match="segment 1 span"):
        stitch(audio, [(0, 50), (60, 120)], [0, 0])
    with pytest.raises(ValueError, match="2 segment spans but 1 pauses"):
        stitch(audio, [(0, 50), (50, 60)], [0])
    with pytest.raises(ValueError, match="valid kinds: clause, sentence, paragraph, chapter"):
        PauseOptions().seconds_for("stanza")
    with pytest.raises(ValueError):
        PauseOptions(sentence_s=-1.0)
    assert BOUNDARY_KINDS == ("clause", "sentence", "paragraph", "chapter")


def test_seconds_to_samples_rounds_to_the_nearest_sample():
    assert seconds_to_samples(1.0) == 24_000
    assert seconds_to_samples(0.00002) == 0  # 0.48 samples
    assert seconds_to_samples(0.0000209) == 1  # 0.5016 samples
    assert seconds_to_samples(1.5, 48_000) == 72_000


def test_split_pause_markers():
    assert split_pause_markers("He stopped. [pause 1.5s] Then he spoke.") == [
        TextPiece("He stopped.", 1.5),
        TextPiece("Then he spoke.", None),
    ]
    assert split_pause_markers("[pause 2s]Start") == [TextPiece("", 2.0), TextPiece("Start", None)]
    assert split_pause_markers("A [pause 1s][PAUSE 0.5 s] B [pause 3s]") == [
        TextPiece("A", 1.5),
        TextPiece("B", 3.0),
    ]
    assert split_pause_markers("no markers here") == [TextPiece("no markers here", None)]
    assert split_pause_markers("") == []
    # not a marker in the planner's grammar: stays text
    assert split_pause_markers("x [pause 1.5] y") == [TextPiece("x [pause 1.5] y", None)]
    assert strip_pause_markers("One. [pause 1s] Two. [pause 0.25s]") == ("One. Two.", [1.0, 0.25])


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(alphabet="abc .,!", min_size=0, max_size=12),
            st.one_of(st.none(), st.decimals(min_value=0, max_value=20, places=2)),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_split_pause_markers_recovers_pieces(pieces):
    text = " ".join(t + ("" if p is None else f" [pause {p}s]") for t, p in pieces)
    # expected: the text between markers (stripped); an empty stretch hands its pause to
    # the piece before it (adjacent markers add up)
    expected: list[TextPiece] = []
    buffer = ""
    for index, (t, p) in enumerate(pieces):
        buffer += (" " if index else "") + t
        if p is None:
            continue
        stretch = buffer.strip()
        buffer = ""
        if stretch or not expected:
            expected.append(TextPiece(stretch, float(p)))
        else:
            expected[-1] = TextPiece(expected[-1].text, expected[-1].pause_s + float(p))
    if buffer.strip():
        expected.append(TextPiece(buffer.strip(), None))
    got = split_pause_markers(text)
    assert [g.text for g in got] == [e.text for e in expected]
    assert [g.pause_s for g in got] == pytest.approx([e.pause_s for e in expected])
