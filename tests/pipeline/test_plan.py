import json
import re
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bs4 import BeautifulSoup
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import InputError
from pipeline.reading import read_book
from pipeline.reading.book import Book, Chapter, Paragraph
from pipeline.reading.clean import clean_paragraph
from pipeline.text.keys import KeyInputs, segment_key
from pipeline.text.lexicon import Lexicon
from pipeline.text.plan import PLAN_SCHEMA, PlanOptions, build_plan, read_plan, write_plan
from pipeline.text.segment import estimate_seconds, seconds_to_frames

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MOBY_DICK = SHARED_DATA / "books" / "moby-dick.epub"
SAMPLES = SHARED_DATA / "texts" / "samples.jsonl"

KEYS = KeyInputs(voice_id="narrator-a", model_id="OpenMOSS-Team/MOSS-TTS", model_revision="main",
                 decoding={"audio_temperature": 1.7, "audio_top_p": 0.8, "audio_top_k": 25},
                 carryover_bound_frames=250)
OPTIONS = PlanOptions()
MAX_FRAMES = seconds_to_frames(OPTIONS.max_seconds)


def needs(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path


MARKER_RE = re.compile(r"\[\s*pause\s+(\d+(?:\.\d+)?)\s*s\s*\]", re.IGNORECASE)


def spoken_chars(text: str) -> str:
    """Letters, digits and Han characters: what must survive from source to plan."""
    return "".join(ch for ch in text if ch.isalnum())


def assert_segments_join_to(paragraph: str, texts: list[str]) -> None:
    """The segment texts are the paragraph, in order, with only whitespace between them."""
    pos = 0
    for text in texts:
        found = paragraph.index(text, pos)
        assert paragraph[pos:found].strip() == ""
        pos = found + len(text)
    assert paragraph[pos:].strip() == ""


def plan_text(tmp_path: Path, text: str, name: str = "book.txt", **options):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    book = read_book(path)
    return book, build_plan(book, PlanOptions(**options), None, KEYS)


def check_plan_invariants(plan) -> None:
    by_chapter: dict[int, list] = {}
    for segment in plan.segments:
        by_chapter.setdefault(segment.chapter_index, []).append(segment)
        assert 1 <= segment.est_frames <= MAX_FRAMES
        assert segment.model_text.strip() == segment.model_text and segment.model_text
        assert not MARKER_RE.search(segment.model_text) and not MARKER_RE.search(segment.text)
        assert segment.pause_s is None or segment.pause_s >= 0
    for segments in by_chapter.values():
        assert [s.segment_index for s in segments] == list(range(len(segments)))
        assert segments[-1].boundary == "chapter"
        assert all(s.boundary in ("clause", "sentence", "paragraph") for s in segments[:-1])
        previous = None
        for i, s in enumerate(segments):  # each key chains to the model text before it in its run
            if i and s.run_index != segments[i - 1].run_index:
                assert s.run_index == segments[i - 1].run_index + 1
                assert s.paragraph_index != segments[i - 1].paragraph_index  # runs start with a paragraph
                previous = None  # a run starts again from the voice
            assert s.key == KEYS.key(s.model_text, previous)
            previous = s.model_text


# --- Moby-Dick -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moby():
    book = read_book(needs(MOBY_DICK))
    return book, build_plan(book, OPTIONS, None, KEYS)


# Pages the table of contents lists that are front or back matter: title page, transcriber's
# notes (epub:type colophon), copyright page.
LEFT_OUT = ("titlepage.xhtml", "preface_001.xhtml", "copyright.xhtml")


def _nav_entries() -> list[tuple[str, str]]:
    """(file, title) of the table of contents, read independently of the reader under test."""
    with zipfile.ZipFile(MOBY_DICK) as z:
        nav = BeautifulSoup(z.read("OPS/toc.xhtml"), "xml")
    toc = next(n for n in nav.find_all("nav") if "toc" in n.get("epub:type", ""))
    return [(a["href"], a.get_text(" ", strip=True)) for a in toc.find_all("a")]


def _chapter_text(name: str) -> str:
    with zipfile.ZipFile(MOBY_DICK) as z:
        page = BeautifulSoup(z.read(f"OPS/{name}"), "xml")
    return page.find("body").get_text(" ")


def test_moby_dick_every_chapter_in_order_with_its_title(moby):
    book, plan = moby
    narrated = [(href, title) for href, title in _nav_entries() if href not in LEFT_OUT]
    assert len(narrated) == 138  # Etymology, Extracts, 135 chapters, Epilogue
    titles = [c.title for c in book.chapters]
    assert titles == [title for _, title in narrated]
    assert titles[:3] == ["ETYMOLOGY.", "EXTRACTS (Supplied by a Sub-Sub-Librarian).", "Chapter 1. Loomings."]
    assert titles[-1] == "Epilogue"
    plan_titles = list(dict.fromkeys((s.chapter_index, s.chapter_title) for s in plan.segments))
    assert plan_titles == list(enumerate(titles))
    check_plan_invariants(plan)


def test_moby_dick_front_matter_is_left_out(moby):
    book, plan = moby
    assert book.skipped == [
        "OPS/cover.xhtml (cover, non-linear)", "OPS/titlepage.xhtml (titlepage)", "OPS/toc-short.xhtml (toc)",
        "OPS/preface_001.xhtml (colophon)", "OPS/copyright.xhtml (copyright-page)", "OPS/toc.xhtml (non-linear, toc)",
    ]
    everything = " ".join(s.text for s in plan.segments)
    assert "Project Gutenberg" not in everything  # copyright page
    assert "Transcriber" not in everything  # colophon
    assert "Show detailed contents" not in everything  # brief table of contents
    assert (book.title, book.author, book.language) == ("Moby-Dick", "Herman Melville", "en")


def test_moby_dick_no_text_lost(moby):
    """The plan's segments hold every letter and digit of every narrated page, in order."""
    book, plan = moby
    files = [href for href, _ in _nav_entries() if href not in LEFT_OUT]
    for index, name in enumerate(files):
        segments = [s.text for s in plan.segments if s.chapter_index == index]
        assert spoken_chars(" ".join(segments)) == spoken_chars(_chapter_text(name)), name
    for index, chapter in enumerate(book.chapters):
        for p_index, paragraph in enumerate(chapter.paragraphs):
            texts = [s.text for s in plan.segments if s.chapter_index == index and s.paragraph_index == p_index]
            if spoken_chars(paragraph.text):
                assert_segments_join_to(paragraph.text, texts)


def test_moby_dick_numbers_and_dashes_are_spoken(moby):
    _, plan = moby
    first = plan.segments[[s.chapter_title for s in plan.segments].index("Chapter 1. Loomings.")]
    assert first.model_text == "Chapter one. Loomings."
    assert not any(re.search(r"\d", s.model_text) for s in plan.segments)
    assert all(s.language == "en" for s in plan.segments)


def test_moby_dick_plan_round_trips_through_parquet(moby, tmp_path):
    _, plan = moby
    path = write_plan(plan, tmp_path / "plan.parquet")
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == PLAN_SCHEMA
    assert table.num_rows == len(plan.segments)
    segments, metadata = read_plan(path)
    assert segments == plan.segments
    assert metadata["book"] == "Moby-Dick" and metadata["key_inputs"]["voice_id"] == "narrator-a"
    assert metadata["options"]["max_seconds"] == OPTIONS.max_seconds


def test_moby_dick_keys_are_stable_across_runs(moby):
    book, plan = moby
    again = build_plan(read_book(MOBY_DICK), OPTIONS, None, KEYS)
    assert [s.key for s in again.segments] == [s.key for s in plan.segments]


# --- the model card samples ------------------------------------------------------------------------
def _samples() -> dict[str, dict]:
    return {row["id"]: row for row in map(json.loads, needs(SAMPLES).read_text(encoding="utf-8").splitlines())}


def test_samples_long_passages(tmp_path):
    samples = _samples()
    for sample_id in ("zh_long", "en_long"):
        sample = samples[sample_id]
        book, plan = plan_text(tmp_path, sample["text"], f"{sample_id}.txt")
        check_plan_invariants(plan)
        assert {s.language for s in plan.segments} == {sample["lang"]}
        assert spoken_chars("".join(s.text for s in plan.segments)) == spoken_chars(sample["text"])
        assert len(plan.segments) > 1


@pytest.mark.parametrize("sample_id", ["pinyin", "pinyin_tones_changed", "hanzi_pinyin_mixed", "ipa"])
def test_samples_inline_controls_reach_the_model_untouched(tmp_path, sample_id):
    sample = _samples()[sample_id]
    _, plan = plan_text(tmp_path, sample["text"], f"{sample_id}.txt")
    assert [s.model_text for s in plan.segments] == [sample["text"]]
    assert plan.segments[0].language == sample["lang"]


# --- nasty inputs --------------------------------------------------------------------------------
@pytest.mark.parametrize("content, message", [("", "empty"), ("  \n\t\n \u3000 \n", "no readable text")])
def test_empty_and_whitespace_only_files(tmp_path, content, message):
    with pytest.raises(InputError, match=message) as info:
        plan_text(tmp_path, content)
    assert str(tmp_path / "book.txt") in str(info.value)


def test_twenty_thousand_characters_without_punctuation(tmp_path):
    text = ("the sea rolled on as it rolled five thousand years ago " * 400)[:20_000]
    book, plan = plan_text(tmp_path, text)
    check_plan_invariants(plan)
    assert_segments_join_to(book.chapters[0].paragraphs[0].text, [s.text for s in plan.segments])
    assert {s.boundary for s in plan.segments} == {"clause", "chapter"}


def test_twenty_thousand_characters_without_any_break_is_an_input_error(tmp_path):
    with pytest.raises(InputError) as info:
        plan_text(tmp_path, "Intro line.\n\nChapter 1\n\nSee " + "z" * 20_000 + " there.")
    assert info.value.place == "chapter 2 'Chapter 1', line 5, character 4 of the paragraph"
    assert "20000 characters" in info.value.problem
    assert "lexicon" in info.value.hint


def test_one_three_thousand_character_chinese_paragraph(tmp_path):
    sentences = "他走过长长的海岸，看见远处的灯塔一闪一闪。风很大，浪很高，可是他没有停下脚步！"
    text = (sentences * 80)[:3000]
    book, plan = plan_text(tmp_path, text)
    check_plan_invariants(plan)
    assert {s.language for s in plan.segments} == {"zh"}
    assert_segments_join_to(book.chapters[0].paragraphs[0].text, [s.text for s in plan.segments])
    unpunctuated = re.sub(r"[，。！]", "", text)
    book, plan = plan_text(tmp_path, unpunctuated)
    check_plan_invariants(plan)
    assert_segments_join_to(book.chapters[0].paragraphs[0].text, [s.text for s in plan.segments])


def test_mixed_scripts(tmp_path):
    _, plan = plan_text(tmp_path, "我喜欢用Python写代码，它有3个版本。\n\nIt costs $5 and runs 2 times faster.\n\n我在2024年学了AI。")
    assert [(s.language, s.model_text) for s in plan.segments] == [
        ("zh", "我喜欢用Python写代码，它有三个版本。"),
        ("en", "It costs five dollars and runs two times faster."),
        ("zh", "我在二零二四年学了AI。"),
    ]


def test_emoji_are_dropped_and_emoji_only_paragraphs_left_out(tmp_path):
    _, plan = plan_text(tmp_path, "Hello 😀 world 🐳!\n\n🎉🎉🎉\n\nThe end.")
    assert [s.model_text for s in plan.segments] == ["Hello world!", "The end."]
    assert [s.boundary for s in plan.segments] == ["paragraph", "chapter"]
    assert any("nothing to say" in w and "🎉🎉🎉" in w for w in plan.warnings)


def test_very_long_words_and_urls(tmp_path):
    url = "https://www.example.com/a/very/long/path/to/some-resource?id=12345&lang=en"
    text = f"Pneumonoultramicroscopicsilicovolcanoconiosis is a long word. See {url} for more."
    book, plan = plan_text(tmp_path, text)
    check_plan_invariants(plan)
    model = " ".join(s.model_text for s in plan.segments)
    assert "Pneumonoultramicroscopicsilicovolcanoconiosis" in model
    assert "www dot example dot com slash a slash very" in model and "://" not in model
    assert any(url in s.text for s in plan.segments)  # never split inside the URL


def test_unbalanced_quotes(tmp_path):
    text = "“He never closed his quote. He went on. And on.\n\nNext paragraph” ends” here. ‘Half open."
    book, plan = plan_text(tmp_path, text)
    check_plan_invariants(plan)
    assert spoken_chars("".join(s.text for s in plan.segments)) == spoken_chars(text)


def test_wrong_encoding_is_reported_before_planning(tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes("Chapter 1\n\nA café.\n".encode("latin-1"))
    with pytest.raises(InputError) as info:
        read_book(path)
    assert info.value.place == "line 3, byte offset 16"


# --- lexicon changes -----------------------------------------------------------------------------
def test_a_lexicon_change_rerenders_only_touched_segments_and_the_next(tmp_path):
    text = ("Ahab stood on deck. " * 3 + "\n\nThe sea was calm.\n\nStarbuck spoke.\n\nAhab turned.\n\n"
            "Nobody answered.\n\nThe end came slowly.\n\n# Two\n\nAnother chapter without him.\n")
    path = tmp_path / "book.md"
    path.write_text(text, encoding="utf-8")
    book = read_book(path)
    plain = build_plan(book, OPTIONS, None, KEYS)
    old = build_plan(book, OPTIONS, Lexicon.parse("Ahab\tAy-hab\nStarbuck\tStar-buck\n"), KEYS)
    new = build_plan(book, OPTIONS, Lexicon.parse("Ahab\tAa-hab\nStarbuck\tStar-buck\n"), KEYS)
    # segment boundaries never depend on the lexicon
    assert [s.text for s in plain.segments] == [s.text for s in old.segments] == [s.text for s in new.segments]
    touched = {i for i, s in enumerate(old.segments) if "Ahab" in s.lexicon_entries}
    following = {i + 1 for i in touched
                 if i + 1 < len(old.segments) and old.segments[i + 1].chapter_index == old.segments[i].chapter_index}
    changed = {i for i, (a, b) in enumerate(zip(old.segments, new.segments)) if a.key != b.key}
    assert touched and following - touched
    assert changed == touched | following
    assert [s.lexicon_entries for s in old.segments if s.lexicon_entries][:2] == [("Ahab",), ("Starbuck",)]


def test_lexicon_entries_that_match_nothing_are_warned(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("Nothing here.", encoding="utf-8")
    plan = build_plan(read_book(path), OPTIONS, Lexicon.parse("Zzyzx\tzai-zix\n"), KEYS)
    assert plan.warnings == ["lexicon entries that matched nothing: 'Zzyzx' (line 1)"]


def test_forced_language(tmp_path):
    _, plan = plan_text(tmp_path, "他有3个。", language="en")
    assert plan.segments[0].language == "en"


# --- pause markers --------------------------------------------------------------------------------
def test_pause_markers_end_segments_and_become_pauses(tmp_path):
    _, plan = plan_text(tmp_path, "One. [pause 2s] Two [pause 0.5s][pause 0.5s] three.")
    check_plan_invariants(plan)
    assert [(s.text, s.model_text, s.pause_s) for s in plan.segments] == [
        ("One.", "One.", 2.0), ("Two", "Two", 1.0), ("three.", "three.", None)]
    assert [s.boundary for s in plan.segments] == ["sentence", "clause", "chapter"]
    # speech only: the pipeline inserts the silence (with the 2 s counted, "One." would be 29 frames)
    assert [s.est_frames for s in plan.segments] == [
        seconds_to_frames(3 / 11.5), seconds_to_frames(3 / 11.5), seconds_to_frames(5 / 11.5)] == [4, 4, 6]
    assert plan.summary().seconds == 14 / 12.5
    assert plan.warnings == []


def test_pauses_stay_out_of_the_keys(tmp_path):
    _, short = plan_text(tmp_path, "One. [pause 2s] Two.")
    _, long = plan_text(tmp_path, "One. [pause 3.5s] Two.")
    assert [s.pause_s for s in short.segments] == [2.0, None] and [s.pause_s for s in long.segments] == [3.5, None]
    assert [s.key for s in short.segments] == [s.key for s in long.segments]
    assert short.segments[1].key == KEYS.key("Two.", "One.")  # carryover still runs across the pause


def _pause_book(chapters: list[list[str]]) -> Book:
    return Book(title="Pauses", author="", language="en", source="<pauses>", chapters=[
        Chapter(f"C{i + 1}", [Paragraph(p, f"paragraph {j}") for j, p in enumerate(ps)], f"chapter {i}")
        for i, ps in enumerate(chapters)])


def test_markers_before_anything_is_said_follow_the_segment_before_them():
    book = _pause_book([
        ["[pause 1s] Hello. [pause 0.5s]", "[pause 0.25s] Again — [pause 1s] — [pause 1s] more."],
        ["[pause 2s]"],  # nothing to say: a chapter of only a pause
        ["[pause 1s] World."],
    ])
    plan = build_plan(book, OPTIONS, None, KEYS)
    check_plan_invariants(plan)
    assert [(s.chapter_index, s.text, s.boundary, s.pause_s) for s in plan.segments] == [
        (0, "Hello.", "paragraph", 0.75),  # its own marker, then the one starting the next paragraph
        (0, "Again —", "clause", 2.0),  # the dash between the markers has nothing to say; both add up
        (0, "more.", "chapter", 3.0),  # chapter 2's pause and chapter 3's opening one follow it
        (2, "World.", "chapter", None),
    ]
    assert "chapter 1 'C1': a pause of 1 s before anything is said in the book has no segment to follow; dropped" \
        in plan.warnings
    assert "chapter 2 'C2' has nothing to say; left out" in plan.warnings
    check_segments_and_markers_join(book, plan)


def test_pauses_round_trip_through_parquet(tmp_path):
    _, plan = plan_text(tmp_path, "One. [pause 2s] Two [pause 0.5s][pause 0.5s] three.")
    path = write_plan(plan, tmp_path / "plan.parquet")
    table = pq.read_table(path)
    assert table.schema.field("pause_s").type == pa.float64() and table.schema.field("pause_s").nullable
    assert table.column("pause_s").to_pylist() == [2.0, 1.0, None]
    segments, _ = read_plan(path)
    assert segments == plan.segments
    # a writer that stores "no pause" as NaN reads back as None
    nan = table.set_column(table.schema.get_field_index("pause_s"), "pause_s",
                           pa.array([2.0, 1.0, float("nan")], pa.float64()))
    pq.write_table(nan, tmp_path / "nan.parquet")
    assert [s.pause_s for s in read_plan(tmp_path / "nan.parquet")[0]] == [2.0, 1.0, None]


# --- properties --------------------------------------------------------------------------------------
_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDE", min_size=1, max_size=12)
_HAN = st.text(alphabet="海天风浪灯塔船帆", min_size=1, max_size=30)
_TOKEN = st.tuples(
    st.one_of(_WORD, _HAN, st.integers(0, 10**6).map(str),
              st.sampled_from(["Dr. Marsh", "3.5 km", "$12", "nin2 hao3", "/həˈloʊ/", "“quoted”", "[pause 1s]"])),
    st.sampled_from(["", "", ".", ",", "!", "?", "。", "，", "—"]),
).map("".join)
_PARAGRAPH = st.lists(_TOKEN, min_size=1, max_size=60).map(" ".join)
_BOOK = st.lists(st.lists(_PARAGRAPH, min_size=1, max_size=4), min_size=1, max_size=3)


def check_segments_and_markers_join(book: Book, plan) -> None:
    """Each paragraph is its segments' texts and its pause markers, in order, with nothing to say between.

    The markers up to the next segment (across paragraphs and chapters) add up to a segment's pause;
    markers before the book's first segment are dropped, with a warning.
    """
    segments = plan.segments
    expected: list[float | None] = [None] * len(segments)
    dropped = 0.0
    last = -1  # the segment the markers seen next follow

    def gap(between: str) -> None:
        nonlocal dropped
        assert spoken_chars(MARKER_RE.sub(" ", between)) == ""  # only left-out pieces with nothing to say
        pauses = [float(m.group(1)) for m in MARKER_RE.finditer(between)]
        if pauses and last >= 0:
            expected[last] = (expected[last] or 0.0) + sum(pauses)
        elif pauses:
            dropped += sum(pauses)

    for c_index, chapter in enumerate(book.chapters):
        for p_index, paragraph in enumerate(chapter.paragraphs):
            pos = 0
            for i, s in enumerate(segments):
                if (s.chapter_index, s.paragraph_index) != (c_index, p_index):
                    continue
                found = paragraph.text.index(s.text, pos)
                gap(paragraph.text[pos:found])
                last, pos = i, found + len(s.text)
            gap(paragraph.text[pos:])
    assert [s.pause_s for s in segments] == expected
    assert any("pause" in w and "dropped" in w for w in plan.warnings) == (dropped > 0)


def _book(chapters: list[list[str]]) -> Book:
    return Book(title="Property", author="", language=None, source="<generated>", chapters=[
        Chapter(f"Chapter {i + 1}", [Paragraph(clean_paragraph(p), f"paragraph {j}") for j, p in enumerate(ps)],
                f"chapter {i}")
        for i, ps in enumerate(chapters)
    ])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chapters=_BOOK, target=st.floats(1, 20), extra=st.floats(0, 20))
def test_property_plan_bounds_join_and_stable_keys(chapters, target, extra):
    options = PlanOptions(target_seconds=target, max_seconds=max(target + extra, 6.0))
    book = _book(chapters)
    try:
        plan = build_plan(book, options, None, KEYS)
    except InputError:  # only pause markers (and punctuation): nothing to say
        assert not any(spoken_chars(MARKER_RE.sub(" ", p.text)) for c in book.chapters for p in c.paragraphs)
        return
    again = build_plan(_book(chapters), options, None, KEYS)
    assert [s.key for s in again.segments] == [s.key for s in plan.segments]
    max_frames = seconds_to_frames(options.max_seconds)
    assert all(s.est_frames <= max_frames for s in plan.segments)
    for s in plan.segments:  # markers never reach the model, and the estimate is speech only
        assert not MARKER_RE.search(s.model_text) and not MARKER_RE.search(s.text)
        assert s.est_frames == seconds_to_frames(estimate_seconds(s.model_text, options.rates, s.language))
    check_segments_and_markers_join(book, plan)
    previous = {}
    for s in plan.segments:
        if s.run_index != previous.get((s.chapter_index, "run"), s.run_index):
            previous.pop(s.chapter_index)
        previous[(s.chapter_index, "run")] = s.run_index
        assert s.key == segment_key(s.model_text, voice_id=KEYS.voice_id, model_id=KEYS.model_id,
                                    model_revision=KEYS.model_revision, decoding=KEYS.decoding,
                                    carryover_bound_frames=KEYS.carryover_bound_frames,
                                    previous_text=previous.get(s.chapter_index))
        previous[s.chapter_index] = s.model_text


def test_long_chapters_are_cut_into_runs_at_paragraph_boundaries():
    paragraphs = [f"Paragraph {i}. " + "The whale rose and the sea went white around the boat. " * 8 for i in range(12)]
    book = Book(title="Runs", author="", language="en", source="runs.txt",
                chapters=[Chapter("Long", [Paragraph(p, f"line {i + 1}") for i, p in enumerate(paragraphs)], "line 1"),
                          Chapter("Short", [Paragraph("Only this.", "line 20")], "line 20")])
    options = PlanOptions(max_run_seconds=120)
    plan = build_plan(book, options, None, KEYS)
    long = [s for s in plan.segments if s.chapter_index == 0]
    runs: dict[int, list] = {}
    for s in long:
        runs.setdefault(s.run_index, []).append(s)
    assert sorted(runs) == list(range(len(runs))) and len(runs) >= 3
    for run in runs.values():
        seconds = sum(s.est_frames for s in run) / 12.5
        paragraph_seconds = max(sum(s.est_frames for s in run if s.paragraph_index == p) / 12.5
                                for p in {s.paragraph_index for s in run})
        assert seconds <= options.max_run_seconds + paragraph_seconds  # cut at the first paragraph past the bound
        assert run[0].key == KEYS.key(run[0].model_text, None)  # anchored on the voice again
    assert [s.run_index for s in plan.segments if s.chapter_index == 1] == [0]
    whole = build_plan(book, PlanOptions(max_run_seconds=10_000), None, KEYS)
    assert {s.run_index for s in whole.segments} == {0}
    assert [s.text for s in whole.segments] == [s.text for s in plan.segments]  # runs never move a cut


def test_keys_name_the_language_only_for_checkpoints_that_read_language_tags(tmp_path):
    book_file = tmp_path / "two.md"
    book_file.write_text("# Two\n\n## One\n\nThe tide came in at dawn, and the boats were pulled up on the beach before "
                         "the storm.\n\n## Deux\n\nLa marée est montée ce matin, et les bateaux étaient déjà sur la "
                         "plage avant la tempête.\n", encoding="utf-8")
    plain_keys = KeyInputs(voice_id="v", model_id="m", model_revision="r")
    tagged_keys = KeyInputs(voice_id="v", model_id="m", model_revision="r", language_tags=True)
    plain = build_plan(read_book(book_file), PlanOptions(), None, plain_keys).segments
    tagged = build_plan(read_book(book_file), PlanOptions(), None, tagged_keys).segments
    assert {"en", "fr"} <= {s.language for s in tagged}
    assert [p.model_text for p in plain] == [t.model_text for t in tagged]
    assert all(p.key != t.key for p, t in zip(plain, tagged))  # the language is part of every tagged key
