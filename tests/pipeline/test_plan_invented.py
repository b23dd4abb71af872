"""No word invented (issue 16): every word a segment's model text says traces back to its text.

The normal inputs (a short book in each language, with numbers, dates, money, units,
abbreviations, URLs, Roman numerals, inline Pinyin and IPA, a lexicon) give no warning; a
deliberately broken normalizer, monkeypatched into the planner here, is caught with the place.
"""
from __future__ import annotations

import pytest

import pipeline.text.normalize
import pipeline.text.plan
from pipeline.reading import read_book
from pipeline.text.check import invented_words
from pipeline.text.inline import split_controls
from pipeline.text.keys import KeyInputs
from pipeline.text.lexicon import Lexicon
from pipeline.text.normalize import speak_pieces
from pipeline.text.plan import PlanOptions, build_plan
from tests.pipeline.test_coverage import BOOKS, PAGES, make_epub

KEYS = KeyInputs(voice_id="v", model_id="m", model_revision="r", decoding={},
                 carryover_bound_frames=250)
INVENTED = "says words that are not in the text"

# Text that normalization rewrites a lot, by language.
REWRITTEN = [
    ("en", "Visit https://www.example.com/a-b?x=1 or mail me@x.org; Chapter XII; the 1st, 22nd and 3rd; 3/4 "
           "of #5, pages 10-20, call 555-123-4567, e.g. 7 mph, 3 lbs. of beef, 5% of A&B, 1 + 2 = 3."),
    ("en", "On 2024-03-15 at 10:05 a.m., Dr. Watson paid £1,250.75 (about $2 million) for 12.5 km of road "
           "in St. Louis, 1905-1910; on 15 March 1851 it was -3 °C, and Nos. 4 and 5 were gone."),
    ("zh", "他花了￥73.5元买了3本书，2024年3月31日下午3:05到，温度是-5℃，增长了25%，第3名，10-20人。"),
    ("ja", "りんごを3個、1,000円で買った。2024年3月31日、14:30に会った。気温は25%上がった。"),
    ("ko", "사과 3개를 샀습니다! 오늘은 2024년 3월 31일입니다. 14:30에 만나요. 25% 올랐어요."),
    ("de", "Es kostet 12,50 € und dauert 3 Stunden; 2325 Leute kamen am 15.01.2024 um 14:30, 21000 Mal, 1984-1990."),
    ("fr", "Il y a 1 234 habitants et 25 % de pluie en 1984, à 12:15, pour 20 €, et 3 km."),
    ("es", "Cuesta 20 € y son las 14:30; en 1984 había 325 casas y 2,5 km, el 15/01/2024."),
]


@pytest.mark.parametrize("language,text", REWRITTEN)
def test_rewrites_invent_nothing(language, text):
    model_text = speak_pieces(split_controls(text), language)
    assert model_text != text
    assert invented_words(text, model_text, [language]) == [], model_text


def test_an_invented_word_is_found_and_a_product_is_not_taken_for_one():
    assert invented_words("He paid $5.", "He paid five dollars banana.", ["en"]) == ["banana"]
    assert invented_words("他买了书。", "他买了香蕉书。", ["zh"]) == ["香", "蕉"]
    # "dollars" is the product of "$": only where the text says so is it traced; "fünf" is a German one.
    assert invented_words("He paid.", "He paid dollars.", ["en"]) == []  # declared products are allowed anywhere
    assert invented_words("Es kostet 5.", "Es kostet fünf Bananen.", ["de"]) == ["bananen"]
    assert invented_words("Ahab", "Ay-hab", ["en"]) == ["ay", "hab"]
    assert invented_words("Ahab", "Ay-hab", ["en"], pronunciations=["Ay-hab"]) == []
    assert invented_words("行长", "hang2 zhang3", ["zh"]) == ["hang", "zhang"]
    assert invented_words("行长", "hang2 zhang3", ["zh"], pinyin=True) == []


def _plan(book, lexicon: Lexicon | None = None):
    return build_plan(book, PlanOptions(), lexicon, KEYS)


def _invented(plan) -> list[str]:
    return [w for w in plan.warnings if INVENTED in w]


@pytest.mark.parametrize("language", sorted(BOOKS))
def test_books_in_each_language_invent_nothing(tmp_path, language):
    heading, body = BOOKS[language]
    rewritten = " ".join(text for code, text in REWRITTEN if code == language)
    path = tmp_path / f"book-{language}.txt"
    path.write_text(f"Opening line of the book.\n\n{heading}\n\n{body}\n\n{rewritten}\n", encoding="utf-8")
    assert _invented(_plan(read_book(path))) == []


def test_markup_and_lexicon_invent_nothing(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("Chapter 1\n\nAhab said /ˈkwiːkwɛɡ/ twice. The 重庆 (chong2 qing4) trip took 3 days.\n\n"
                    "银行行长 came to Nantucket. [pause 1s] Then 5 more.\n", encoding="utf-8")
    lexicon = Lexicon.parse("Ahab\tAy-hab\nNantucket\t/ˌnænˈtʌkɪt/\n", polyphones="行长")
    plan = _plan(read_book(path), lexicon)
    assert {e for s in plan.segments for e in s.lexicon_entries} >= {"Ahab", "Nantucket", "pinyin:行"}
    assert _invented(plan) == []


def test_epub_book_invents_nothing(tmp_path):
    assert _invented(_plan(read_book(make_epub(tmp_path / "b.epub", PAGES)))) == []


@pytest.mark.slow  # plans all of Moby-Dick (test_coverage plans it too, for the letters)
def test_moby_dick_invents_nothing(shared_data):
    assert _invented(_plan(read_book(shared_data / "books" / "moby-dick.epub"))) == []


def test_a_broken_normalizer_is_caught_with_its_place(tmp_path, monkeypatch):
    """A normalizer that adds a word (monkeypatched: "fish" is said "fish banana") is reported with the
    chapter, the paragraph and the segment where it did."""
    def broken(pieces, language):
        return speak_pieces(pieces, language).replace("fish", "fish banana")

    monkeypatch.setattr(pipeline.text.plan, "speak_pieces", broken)
    path = tmp_path / "book.txt"
    path.write_text("Opening line of the book.\n\nChapter 1\n\nNo fish here? None.\n\n"
                    "The sea was calm. They ate fish at 5:30 p.m. and slept.\n", encoding="utf-8")
    plan = _plan(read_book(path))
    [warning] = _invented(plan)
    assert warning.startswith("2 segment(s)")
    # The chapter's heading is its paragraph 1 and segment 0.
    assert "chapter 2 'Chapter 1', paragraph 2 (line 5), segment 1: 'banana'" in warning
    assert "chapter 2 'Chapter 1', paragraph 3 (line 7), segment 2: 'banana'" in warning
    [segment] = [s for s in plan.segments if s.chapter_index == 1 and s.paragraph_index == 2]
    assert segment.segment_index == 2 and "fish banana" in segment.model_text


def test_a_broken_rewrite_rule_is_caught(tmp_path, monkeypatch):
    """A rewrite rule that invents (monkeypatched: "Mr." read "Mister Sir") is caught; the word it
    should say ("Mister") is a declared product and is not reported."""
    def broken(m):
        return "Mister Sir" if m.group(1) == "Mr" else original(m)

    original = pipeline.text.normalize._speak_abbreviation
    monkeypatch.setattr(pipeline.text.normalize, "_speak_abbreviation", broken)
    path = tmp_path / "book.txt"
    path.write_text("Chapter 1\n\nMr. Smith came. Dr. Jones left.\n", encoding="utf-8")
    [warning] = _invented(_plan(read_book(path)))
    assert "chapter 1 'Chapter 1', paragraph 2 (line 3), segment 1: 'sir'" in warning and "mister" not in warning


@pytest.mark.parametrize("between", ["—", "—jump", "*", "* *"])
def test_a_unit_that_says_nothing_glues_no_words(between):
    """An over-long sentence cut between words can leave a unit that says nothing (a lone dash or
    asterisk) inside a segment; the words on either side of it stay apart ("thunder jump", not
    "thunderjump", which the dropped- and the invented-word checks both report)."""
    words = " ".join(["and then the whale swam on"] * 12)
    book = read_book_text(f"{words} thunder {between} jump — {words}")
    plan = build_plan(book, PlanOptions(target_seconds=3.0, max_seconds=6.0), None, KEYS)
    [segment] = [s for s in plan.segments if "thunder" in s.text]
    assert segment.text == f"thunder {between} jump —"
    assert segment.model_text == "thunder jump" + (" jump" if "jump" in between else "")
    assert not [w for w in plan.warnings if INVENTED in w or "leaves out words" in w]


def read_book_text(paragraph: str):
    from pipeline.reading.book import Book, Chapter, Paragraph

    return Book(title="T", author="", language="en", source="<t>",
                chapters=[Chapter("One", [Paragraph(paragraph, "line 1")], "line 1")])
