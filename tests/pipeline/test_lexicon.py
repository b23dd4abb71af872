import pytest

from pipeline.errors import InputError
from pipeline.text.inline import split_controls
from pipeline.text.lexicon import Lexicon, entry_kind
from pipeline.text.normalize import speak_pieces

LEXICON = "# a comment\n\n重庆\tchong2 qing4\n重庆大学\tchong2 qing4 da4 xue2\nQueequeg\t/ˈkwiːkwɛɡ/\nAhab\tAy-hab\nNew Bedford\tNoo Bedford\n"


def render(lexicon: Lexicon, text: str, language: str) -> tuple[str, list[str]]:
    pieces, used = lexicon.apply(split_controls(text))
    return speak_pieces(pieces, language), used


def test_entry_kinds():
    assert entry_kind("chong2 qing4") == "pinyin"
    assert entry_kind("/ˈkwiːkwɛɡ/") == "ipa"
    assert entry_kind("Ay-hab") == "respelling"


def test_longest_match_first_inside_chinese_without_spaces():
    lexicon = Lexicon.parse(LEXICON)
    text, used = render(lexicon, "我在重庆大学和重庆工作。", "zh")
    assert text == "我在 chong2 qing4 da4 xue2 和 chong2 qing4 工作。"
    assert used == ["重庆大学", "重庆"]


def test_english_terms_match_whole_words_only_and_replacements_are_not_normalized_again():
    lexicon = Lexicon.parse(LEXICON)
    text, used = render(lexicon, "Queequeg met Ahab's crew in New Bedford; Ahabs and Queequegs did not.", "en")
    assert text == "/ˈkwiːkwɛɡ/ met Ay-hab's crew in Noo Bedford; Ahabs and Queequegs did not."
    assert used == ["Queequeg", "Ahab", "New Bedford"]


def test_terms_inside_inline_controls_are_left_alone():
    lexicon = Lexicon.parse("hao3\tHOW\nwɜːld\tworld\n")
    text, used = render(lexicon, "nin2 hao3 and /həˈloʊ wɜːld/", "en")
    assert text == "nin2 hao3 and /həˈloʊ wɜːld/"
    assert used == []


def test_polyphones_are_read_in_context_with_pypinyin():
    lexicon = Lexicon(polyphones="行长")
    text, used = render(lexicon, "银行行长走在人行道上。", "zh")
    assert text == "银 hang2 hang2 zhang3 走在人 xing2 道上。"
    assert used == ["pinyin:行", "pinyin:长"]


def test_lexicon_wins_over_polyphones():
    lexicon = Lexicon.parse("银行\tyin2 hang2\n", polyphones="行")
    text, used = render(lexicon, "去银行，不行。", "zh")
    assert text == "去 yin2 hang2，不 xing2。"
    assert used == ["银行", "pinyin:行"]


@pytest.mark.parametrize("content, place, problem", [
    ("good\tgood\nno tab here\n", "line 2", "expected 'term<TAB>pronunciation'"),
    ("a\tb\na\tc\n", "line 2", "already defined on line 1"),
    ("\tb\n", "line 1", "expected"),
])
def test_bad_lexicon_lines_are_input_errors(tmp_path, content, place, problem):
    path = tmp_path / "book.lexicon.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as info:
        Lexicon.load(path)
    assert info.value.place == place
    assert problem in info.value.problem
    assert str(path) in str(info.value)


def test_missing_lexicon_file(tmp_path):
    with pytest.raises(InputError, match="lexicon file not found"):
        Lexicon.load(tmp_path / "missing.tsv")


def test_digest_follows_the_entries():
    assert Lexicon.parse("a\tb\n").digest() == Lexicon.parse("# c\na\tb\n").digest()
    assert Lexicon.parse("a\tb\n").digest() != Lexicon.parse("a\tc\n").digest()
    assert Lexicon.parse("a\tb\n").digest() != Lexicon.parse("a\tb\n", polyphones="行").digest()
