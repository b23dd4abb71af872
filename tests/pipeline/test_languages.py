"""Languages: detection, speaking rates, sentences, spoken numbers, unhandled languages, word cuts."""
from __future__ import annotations

import re

import jieba
import pytest

from pipeline.reading import read_book
from pipeline.reading.script import LANGUAGES, detect_language
from pipeline.text.keys import KeyInputs
from pipeline.text.normalize import to_spoken
from pipeline.text.plan import PlanOptions, build_plan
from pipeline.text.segment import SpeakingRates, estimate_seconds, segment_paragraph, sentence_ends

KEYS = KeyInputs(voice_id="v", model_id="m", model_revision="r", decoding={},
                 carryover_bound_frames=250)
RATES = SpeakingRates()


def plan_file(tmp_path, name: str, text: str, **options):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    book = read_book(path)
    return book, build_plan(book, PlanOptions(**options), None, KEYS)


@pytest.mark.parametrize("text, language", [
    ("へえ", "ja"),
    ("「なるほど」", "ja"),
    ("東京タワーへ行く。", "ja"),
    ("今天天气很好。", "zh"),
    ("안녕하세요. 반갑습니다.", "ko"),
    ("Call me Ishmael. Some years ago, never mind how long precisely, I went to sea.", "en"),
    ("Der Hund läuft schnell über die Straße, und die Katze schläft im Garten.", "de"),
    ("Le chat est sur la table, dit-il, et il ne bougera pas de là ce soir.", "fr"),
    ("¿Dónde está la biblioteca? Está allí, al lado del parque central de la ciudad.", "es"),
    ("Привет, мир! Как у тебя дела сегодня?", "ru"),
    ("Mixed 中文 and English words here", "en"),
    ("我有三个apple", "zh"),
])
def test_detect_language(text, language):
    assert detect_language(text) == language


def test_short_latin_text_keeps_the_default():
    assert detect_language("Ja, gut.", default="de") == "de"
    assert detect_language("Hello", default="zh") == "en"  # Latin text in a Chinese book


def test_every_handled_language_has_a_rate_and_rates_apply_by_script():
    assert set(LANGUAGES) == {"en", "zh", "ja", "ko", "de", "fr", "es"}
    assert all(getattr(RATES, code) > 0 for code in LANGUAGES)
    assert estimate_seconds("へえ", RATES, "ja") == pytest.approx(2 / RATES.ja)
    assert estimate_seconds("東京", RATES, "ja") == pytest.approx(2 / RATES.ja)
    assert estimate_seconds("東京", RATES, "zh") == pytest.approx(2 / RATES.zh)
    assert estimate_seconds("안녕", RATES, "ko") == pytest.approx(2 / RATES.ko)
    assert estimate_seconds("Hallo Welt", RATES, "de") == pytest.approx(9 / RATES.de)
    assert estimate_seconds("Привет", RATES, "ru") == pytest.approx(6 / RATES.en)
    with pytest.raises(ValueError, match="must be positive"):
        SpeakingRates(ja=0)


def test_japanese_kana_lines_are_planned_tagged_and_timed(tmp_path):
    lines = ["「へえ」", "「なるほど」", "「そうですね」", "ええ……そうですね。",
             "わたしはきのうともだちといっしょにとしょかんへいってほんをよみました。"]
    book, plan = plan_file(tmp_path, "本.txt", "\n".join(lines) + "\n")
    assert [s.text for s in plan.segments] == lines  # none dropped as empty
    assert {s.language for s in plan.segments} == {"ja"}
    long_line = plan.segments[-1]
    assert len(long_line.text) == 35 and long_line.est_frames / 12.5 > 3.5  # not 0.48 s
    assert not any("not handle" in w for w in plan.warnings)


@pytest.mark.parametrize("text, sentences", [
    ("今日は晴れ。明日は雨！本当？", ["今日は晴れ。", "明日は雨！", "本当？"]),
    ("「行こう」と言った。彼は笑った。", ["「行こう」と言った。", "彼は笑った。"]),
    ("안녕하세요. 반갑습니다! 어디 가세요?", ["안녕하세요.", "반갑습니다!", "어디 가세요?"]),
    ("¿Qué? ¡Nada! Bien.", ["¿Qué?", "¡Nada!", "Bien."]),
])
def test_sentences_in_japanese_korean_and_spanish(text, sentences):
    ends = sentence_ends(text)
    assert [text[a:b].strip() for a, b in zip([0] + ends, ends)] == sentences


@pytest.mark.parametrize("text, language, expected", [
    ("￥73.5元", "zh", "七十三点五元"),  # not 七十三点五元元
    ("￥73.5", "zh", "七十三点五元"),
    ("Es kostet 1.234,50 € und 3,5 % mehr.", "de",
     "Es kostet eintausendzweihundertvierunddreißig Euro fünfzig Cent und drei Komma fünf Prozent mehr."),
    ("Er wurde 1851 geboren, um 14:30.", "de", "Er wurde achtzehnhunderteinundfünfzig geboren, um vierzehn Uhr dreißig."),
    ("Il y a 1 234 habitants et 25 % de 12,05 €.", "fr",
     "Il y a mille deux cent trente-quatre habitants et vingt-cinq pour cent de douze euros cinq centimes."),
    ("Son las 14:30 y cuesta 20 €.", "es", "Son las catorce y treinta y cuesta veinte euros."),
    ("りんごを3個、2024年に1,000円で買った。", "ja", "りんごを三個、二千二十四年に千円で買った。"),
    ("사과 3개와 2024년, 50%", "ko", "사과 세개와 이천이십사년, 오십 퍼센트"),
    ("Dr. Müller", "de", "Dr. Müller"),  # English abbreviations stay English
    ("Dr. Miller", "en", "Doctor Miller"),
])
def test_spoken_numbers_per_language(text, language, expected):
    assert to_spoken(text, language) == expected


def test_unhandled_language_is_narrated_with_a_warning_naming_it(tmp_path):
    text = "Chapter 1\n\nPrivet. Это длинное предложение на русском языке, которое нужно прочитать.\n"
    _, plan = plan_file(tmp_path, "book.txt", text)
    assert [(s.text, s.language) for s in plan.segments][0] == ("Chapter 1", "en")
    russian = [s for s in plan.segments if s.language == "ru"]
    assert len(russian) == 1 and "русском" in russian[0].model_text
    assert any("Russian (ru)" in w and "not handle" in w for w in plan.warnings)


def test_language_option_accepts_the_codes_and_lists_them_when_wrong(tmp_path):
    for code in LANGUAGES:
        assert PlanOptions(language=code).language == code
    with pytest.raises(ValueError, match="auto, en, zh, ja, ko, de, fr, es"):
        PlanOptions(language="xx")
    _, plan = plan_file(tmp_path, "book.txt", "Hola amigo.\n", language="es")
    assert {s.language for s in plan.segments} == {"es"}


def _measure(text: str) -> float:
    return estimate_seconds(text, RATES, detect_language(text))


def test_long_chinese_run_without_punctuation_is_cut_between_words():
    words = "我们在北京大学学习中文的时候遇到了很多有意思的人他们来自世界各地"
    text = words * 12 + "用Python写了2024个程序" + words * 6
    cuts = segment_paragraph(text, _measure, 18.0, 30.0)
    assert len(cuts) > 2
    edges = set()
    position = 0
    for word in jieba.cut(text):
        position += len(word)
        edges.add(position)
    for cut in cuts[:-1]:
        assert cut.end in edges, text[cut.end - 5:cut.end + 5]
        assert not (text[cut.end - 1].isascii() and text[cut.end].isascii())  # never inside Python or 2024
    assert "".join(text[c.start:c.end] for c in cuts) == text


def test_long_japanese_run_is_cut_where_kana_gives_way_to_kanji():
    text = "私は昨日友達と一緒に図書館へ行って本を読みました" * 20
    cuts = segment_paragraph(text, _measure, 18.0, 30.0)
    assert len(cuts) > 1
    for cut in cuts[:-1]:
        before, after = text[cut.end - 1], text[cut.end]
        assert re.match("[\u3041-\u309f]", before) and re.match("[\u4e00-\u9fff\u30a0-\u30ff]", after)


def test_chinese_text_before_the_first_heading_is_not_titled_with_the_file_name(tmp_path):
    text = "这是一本书的开头部分，讲述了很多故事。\n第一章 开端\n故事开始了。\n"
    book, _ = plan_file(tmp_path, "我的书.txt", text)
    assert [c.title for c in book.chapters] == ["开篇", "第一章 开端"]
    book, _ = plan_file(tmp_path, "另一本.txt", "序\n很久以前。\n第一章 开端\n故事开始了。\n")
    assert book.chapters[0].title == "序"  # a title-like first line names it
