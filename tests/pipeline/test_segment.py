import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.text.normalize import speak_pieces
from pipeline.text.inline import find_controls, split_controls
from pipeline.reading.script import detect_language
from pipeline.reading.clean import clean_paragraph
from pipeline.text.segment import (
    SpeakingRates, UnsplittableError, estimate_seconds, seconds_to_frames, segment_paragraph, sentence_ends,
)

RATES = SpeakingRates(en=11.5, zh=4.5)


def measure(text: str) -> float:
    return estimate_seconds(speak_pieces(split_controls(text), detect_language(text)), RATES)


def sentences(text: str) -> list[str]:
    ends = sentence_ends(text)
    return [text[a:b].strip() for a, b in zip([0] + ends, ends)]


MARKER_RE = re.compile(r"\[\s*pause\s+(\d+(?:\.\d+)?)\s*s\s*\]", re.IGNORECASE)


def check_cuts(text: str, target: float, maximum: float):
    cuts = segment_paragraph(text, measure, target, maximum)
    assert "".join(text[c.start:c.end] for c in cuts) == text  # nothing lost, nothing added
    assert all(c.end == d.start for c, d in zip(cuts, cuts[1:]))
    for i, c in enumerate(cuts):
        speech, rest = text[c.start:c.speech_end], text[c.speech_end:c.end]
        # The plan's estimate of a cut is the sum of its units, each measured in its own language
        # (a mixed-language whole may be detected as another language and measure a little more).
        assert sum(measure(text[a:b]) for a, b in c.units) <= maximum + 1e-9
        assert c.units == () or (c.units[0][0] == c.start and all(
            a[1] == b[0] for a, b in zip(c.units, c.units[1:])))
        # pause markers never sit in a cut's speech: they end it, and their seconds are its pause
        assert not MARKER_RE.search(speech)
        assert MARKER_RE.sub("", rest).strip() == ""
        pauses = [float(m.group(1)) for m in MARKER_RE.finditer(rest)]
        assert c.pause_s == (pytest.approx(sum(pauses)) if pauses else None)
        if not c.units:  # only a pause, written before anything is said in the paragraph
            assert i == 0 and not speech.strip() and c.pause_s
    return cuts


# --- sentences ---------------------------------------------------------------------------
def test_english_sentences_respect_abbreviations_initials_decimals_quotes_and_brackets():
    text = ("Dr. Marsh met J. R. Tolkien at 3.14 p.m. in town. He said no. Then “Hey!” he said. “Stop.” "
            "(See above.) It is 5 p.m. Done… And e.g. this. No. 5 is here.")
    assert sentences(text) == [
        "Dr. Marsh met J. R. Tolkien at 3.14 p.m. in town.",
        "He said no.",
        "Then “Hey!” he said.",
        "“Stop.”",
        "(See above.)",
        "It is 5 p.m.",
        "Done…",
        "And e.g. this.",
        "No. 5 is here.",
    ]


def test_chinese_and_mixed_sentences():
    text = "我喜欢Python。It is great. 你好！好的？是；嗯……“走吧。”他说。Done"
    assert sentences(text) == ["我喜欢Python。", "It is great.", "你好！", "好的？", "是；", "嗯……", "“走吧。”", "他说。", "Done"]


def test_no_sentence_break_inside_ipa_or_marker():
    text = "Say /həloʊ. meɪ aɪ? æsk/ Now. Wait [pause 1.5s] Then go."
    assert sentences(text) == ["Say /həloʊ. meɪ aɪ? æsk/ Now.", "Wait [pause 1.5s] Then go."]


# --- packing --------------------------------------------------------------------------------
def test_short_sentences_pack_up_to_the_target():
    text = " ".join(["Call me Ishmael."] * 40)
    cuts = check_cuts(text, target=10, maximum=20)
    assert len(cuts) > 1
    assert all(measure(text[c.start:c.end]) <= 10 for c in cuts)
    assert [c.boundary for c in cuts] == ["sentence"] * (len(cuts) - 1) + ["paragraph"]


def test_a_sentence_between_target_and_maximum_stays_whole():
    sentence = "This sentence is somewhat long, and it goes on for a while before it ends at last."
    cuts = check_cuts(sentence, target=2, maximum=20)
    assert len(cuts) == 1


def test_long_sentence_splits_at_clauses_first():
    text = ", ".join(["the whale swam on and on through the grey sea"] * 12) + "."
    cuts = check_cuts(text, target=8, maximum=10)
    assert len(cuts) > 1
    for c in cuts[:-1]:
        assert text[c.start:c.end].rstrip().endswith(",")
        assert c.boundary == "clause"
    assert cuts[-1].boundary == "paragraph"


def test_twenty_thousand_characters_without_punctuation_split_between_words():
    words = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor " * 300)[:20_000]
    text = clean_paragraph(words)
    cuts = check_cuts(text, target=18, maximum=30)
    assert len(cuts) > 20
    for c in cuts[1:]:
        assert text[c.start - 1] == " "  # every cut falls after a space, never inside a word


def test_three_thousand_chinese_characters_without_punctuation():
    text = ("天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏" * 125)[:3000]
    cuts = check_cuts(text, target=18, maximum=30)
    assert len(cuts) >= 3000 / (30 * RATES.zh)
    assert all(c.boundary in ("clause", "paragraph") for c in cuts)


def test_a_word_longer_than_the_maximum_is_an_error_with_its_place():
    text = "Fine words. " + "x" * 1000 + " more."
    with pytest.raises(UnsplittableError) as info:
        segment_paragraph(text, measure, 18, 30)
    assert (info.value.start, info.value.end) == (12, 1012)


def test_never_cut_inside_ipa_or_a_marker():
    ipa = "/" + " ".join(["həˈloʊ wɜːld"] * 6) + "/"
    text = " ".join(["word"] * 60 + [ipa] + ["word"] * 60 + ["[pause 2s]"] + ["word"] * 60)
    cuts = check_cuts(text, target=4, maximum=8)
    spans = [(c.start, c.end) for c in find_controls(text)]
    assert len(spans) == 2
    for cut in cuts[1:]:
        assert not any(start < cut.start < end for start, end in spans)


def test_a_pause_marker_ends_a_cut_and_adjacent_markers_add_up():
    text = "One. [pause 2s] Two [pause 0.5s][pause 0.5s] three."
    cuts = check_cuts(text, target=18, maximum=30)  # without the markers, one cut would hold it all
    assert [text[c.start:c.speech_end].strip() for c in cuts] == ["One.", "Two", "three."]
    assert [c.pause_s for c in cuts] == [2.0, 1.0, None]
    assert [c.boundary for c in cuts] == ["sentence", "clause", "paragraph"]
    assert [c.seconds for c in cuts] == pytest.approx([3 / 11.5, 3 / 11.5, 5 / 11.5])  # speech only


def test_markers_at_the_edges_of_a_paragraph():
    text = "[pause 1s] [PAUSE 0.25 s] Hello there. [pause 3s]"
    cuts = check_cuts(text, target=18, maximum=30)
    assert [(c.units == (), c.pause_s, c.boundary) for c in cuts] == [(True, 1.25, "clause"),
                                                                      (False, 3.0, "paragraph")]
    assert text[cuts[1].start:cuts[1].speech_end].strip() == "Hello there."
    only = check_cuts("[pause 2s]", target=18, maximum=30)
    assert [(c.units, c.pause_s) for c in only] == [((), 2.0)]


def test_a_long_pause_is_not_an_unsplittable_word():
    cuts = check_cuts("Wait. [pause 60s] Go.", target=2, maximum=8)
    assert [c.pause_s for c in cuts] == [60.0, None]


def test_an_unsplittable_word_after_a_marker_is_reported_at_its_place_in_the_paragraph():
    text = "Fine. [pause 1s] " + "x" * 1000 + " more."
    with pytest.raises(UnsplittableError) as info:
        segment_paragraph(text, measure, 18, 30)
    assert (info.value.start, info.value.end) == (17, 1017)


def test_estimate_counts_scripts_and_pinyin_but_not_pauses():
    assert estimate_seconds("abc de", RATES) == pytest.approx(5 / 11.5)
    assert estimate_seconds("你好。", RATES) == pytest.approx(2 / 4.5)
    assert estimate_seconds("nin2 hao3", RATES) == pytest.approx(2 / 4.5)
    # speech only: the pipeline inserts a marker's silence, so it adds nothing to the estimate
    assert estimate_seconds("[pause 1.5s]", RATES) == 0
    assert estimate_seconds("abc [pause 1.5s] de", RATES) == pytest.approx(5 / 11.5)
    assert seconds_to_frames(1.0) == 13 and seconds_to_frames(0.8) == 10 and seconds_to_frames(0) == 1


# --- properties ----------------------------------------------------------------------------
_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ", min_size=1, max_size=14)
_HAN = st.text(alphabet="天地玄黄宇宙洪荒日月盈昃辰宿列张", min_size=1, max_size=40)
_TOKEN = st.one_of(
    _WORD,
    st.tuples(_HAN, st.sampled_from(["", "Python", "3个", "。", "，", "！", "……"])).map("".join),
    st.integers(min_value=0, max_value=10**9).map(str),
    st.sampled_from(["Dr.", "e.g.", "3.14", "$5", "50%", "nin2 hao3", "/həˈloʊ/", "[pause 1s]", "😀", "“", "”",
                     "\"", "(", ")", "—", "…", "!!!", "http://example.com/a"]),
)
_PUNCT = st.sampled_from(["", "", "", ".", ",", "!", "?", ";", ":", "。", "，", "”", ".”", "?)"])
# Words are at most a few seconds long: separators always hold whitespace (Chinese
# tokens glue without spaces inside them).
_TEXT = st.lists(st.tuples(_TOKEN, _PUNCT, st.sampled_from([" ", " ", "  ", "\n", " \n\n "])),
                 min_size=1, max_size=150).map(lambda parts: "".join(t + p + gap for t, p, gap in parts))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_TEXT, target=st.floats(min_value=0.5, max_value=20), extra=st.floats(min_value=0, max_value=15))
def test_property_no_segment_exceeds_the_maximum_and_cuts_join_back(raw, target, extra):
    text = clean_paragraph(raw)
    maximum = max(target + extra, 8.0)  # 8 s: longer than any single generated word
    target = min(target, maximum)
    if not text:
        assert segment_paragraph(text, measure, target, maximum) == []
        return
    cuts = check_cuts(text, target, maximum)
    assert cuts[-1].boundary == "paragraph"
    for c in cuts[1:]:
        before, after = text[c.start - 1], text[c.start]
        assert not (before.isascii() and before.isalnum() and after.isascii() and after.isalnum())
