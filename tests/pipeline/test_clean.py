"""One text-cleaning path: every invisible character (Unicode category Cf: zero-width space and
joiners, BOM, soft hyphen, bidirectional marks, ...) is dropped by the one definition in
pipeline/reading/clean.py, whether the text comes from a book (every reader) or a dataset row,
and the model's own clean-up (moss_model/text_normalize.py) drops exactly the same characters."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from moss_model.text_normalize import normalize_text
from pipeline.dataset.prepare import PrepareOptions, Preparer
from pipeline.dataset.rows import InputRow
from pipeline.dataset.voices import DatasetVoice
from pipeline.narration.voice import VoiceSpec
from pipeline.reading import read_book
from pipeline.reading.clean import clean_paragraph, drop_invisible, is_invisible
from pipeline.text.inline import split_controls
from pipeline.text.keys import KeyInputs
from pipeline.text.normalize import speak_pieces

INVISIBLE = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]
# The zero-width and direction characters books carry most often.
COMMON = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_one_definition_of_invisible():
    assert set(COMMON) <= set(INVISIBLE)
    assert [ch for ch in map(chr, range(sys.maxunicode + 1)) if is_invisible(ch)] == INVISIBLE
    assert drop_invisible("".join(INVISIBLE)) == ""


@pytest.mark.parametrize("char", INVISIBLE, ids=lambda ch: f"U+{ord(ch):04X}")
def test_the_pipeline_and_the_model_drop_each_invisible_character(char):
    assert clean_paragraph(f"zero{char}width") == "zerowidth"
    assert normalize_text(f"zero{char}width") == "zerowidth"


def test_books_and_dataset_rows_are_cleaned_the_same_way(tmp_path):
    hidden = "".join(INVISIBLE)
    paragraph = f"Zero{hidden} width{COMMON} words\u00a0here."
    expected = clean_paragraph(paragraph)
    assert expected == "Zero width words here."

    for name, body in (("book.txt", f"Chapter 1\n\n{paragraph}\n"), ("book.md", f"# Chapter 1\n\n{paragraph}\n")):
        path = tmp_path / name
        path.write_text(body, encoding="utf-8")
        texts = [p.text for chapter in read_book(path).chapters for p in chapter.paragraphs]
        assert texts[-1] == expected, name

    voice = DatasetVoice("v", VoiceSpec(None, None, "ref-v"))
    preparer = Preparer({"v": voice}, KeyInputs("", "tiny", "rev", {}, 0), PrepareOptions())
    [item], reject = preparer.prepare(InputRow("t:1", {"id": "a", "text": paragraph}))
    assert reject is None
    assert item.text == expected
    assert item.normalized_text == speak_pieces(split_controls(expected), "en") == "Zero width words here."
    assert not any(is_invisible(ch) for ch in item.normalized_text)
