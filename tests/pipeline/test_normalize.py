import pytest

from pipeline.reading.clean import clean_paragraph, split_paragraphs
from pipeline.text import chinese as zh
from pipeline.text import english as en
from pipeline.text.inline import find_controls, split_controls
from pipeline.text.normalize import speak_pieces, to_spoken


def spoken(text: str, language: str = "en") -> str:
    return speak_pieces(split_controls(text), language)


# --- clean text ------------------------------------------------------------------
def test_clean_paragraph_whitespace_invisible_characters_and_line_breaks():
    assert clean_paragraph("  a\u00a0 b\t\tc\u200b\ufeffd\u00ad\n e  ") == "a b cd e"
    assert clean_paragraph("亲爱的你，\n你好呀。") == "亲爱的你，你好呀。"
    assert clean_paragraph("hello\nworld") == "hello world"
    assert clean_paragraph("exam-\nple") == "exam-ple"
    assert clean_paragraph("a--b") == "a—b"
    assert clean_paragraph("２０２４年") == "2024年"
    assert clean_paragraph("a\x07b\x1bc") == "a b c"


def test_split_paragraphs_blank_lines_and_one_per_line():
    assert split_paragraphs("a\nb\n\n\nc d\n  \ne\n") == [("a b", 1), ("c d", 5), ("e", 7)]
    assert split_paragraphs("line1\nline2\r\nline3") == [("line1", 1), ("line2", 2), ("line3", 3)]
    assert split_paragraphs("\n\n   \n") == []


# --- number words ------------------------------------------------------------------
@pytest.mark.parametrize("n, words", [
    (0, "zero"), (13, "thirteen"), (21, "twenty-one"), (100, "one hundred"), (101, "one hundred one"),
    (1234, "one thousand two hundred thirty-four"), (1_000_000, "one million"), (-5, "minus five"),
])
def test_english_cardinals(n, words):
    assert en.cardinal(n) == words


@pytest.mark.parametrize("n, words", [(1, "first"), (2, "second"), (3, "third"), (12, "twelfth"),
                                      (20, "twentieth"), (21, "twenty-first"), (101, "one hundred first")])
def test_english_ordinals(n, words):
    assert en.ordinal(n) == words


@pytest.mark.parametrize("n, words", [(1851, "eighteen fifty-one"), (1905, "nineteen oh five"),
                                      (1900, "nineteen hundred"), (2005, "two thousand five"),
                                      (2024, "twenty twenty-four"), (2000, "two thousand")])
def test_english_years(n, words):
    assert en.year(n) == words


@pytest.mark.parametrize("n, words", [
    (0, "零"), (2, "二"), (10, "十"), (12, "十二"), (20, "二十"), (105, "一百零五"), (110, "一百一十"),
    (1001, "一千零一"), (10010, "一万零一十"), (12345, "一万二千三百四十五"), (100000001, "一亿零一"),
])
def test_chinese_cardinals(n, words):
    assert zh.cardinal(n) == words


def test_roman_numerals():
    assert en.roman_to_int("XII") == 12
    assert en.roman_to_int("MCMXCIX") == 1999
    assert en.roman_to_int("IIII") is None
    assert en.roman_to_int("ABC") is None


# --- English spoken forms ------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("In 1851, he left.", "In eighteen fifty-one, he left."),
    ("It cost $1,234.56.", "It cost one thousand two hundred thirty-four dollars and fifty-six cents."),
    ("It cost $5 million.", "It cost five million dollars."),
    ("Pay £3 or €0.50.", "Pay three pounds or fifty cents."),
    ("About 50% off.", "About fifty percent off."),
    ("Pi is 3.14.", "Pi is three point one four."),
    ("the 21st century", "the twenty-first century"),
    ("AUGUST 3d, 1833", "AUGUST third, eighteen thirty-three"),
    ("Meet at 10:30 pm.", "Meet at ten thirty p m."),
    ("At 6:30 p.m., she left.", "At six thirty p m, she left."),
    ("She left at 6:30 p.m.", "She left at six thirty p m."),
    ("at 9:00", "at nine o'clock"),
    ("On 2024-03-15 we met.", "On March fifteenth, twenty twenty-four we met."),
    ("On March 15, 2024 we met.", "On March fifteenth, twenty twenty-four we met."),
    ("On 15 March we met.", "On the fifteenth of March we met."),
    ("Walk 5 km, then 1 km.", "Walk five kilometers, then one kilometer."),
    ("400,000 lbs. of beef", "four hundred thousand pounds of beef"),
    ("Add 1/2 cup.", "Add one half cup."),
    ("from 1990–1995", "from nineteen ninety to nineteen ninety-five"),
    ("Call 555-1234.", "Call five five five, one two three four."),
    ("Agent 007", "Agent zero zero seven"),
    ("mp3 files", "mp three files"),
    ("Dr. Marsh and Mr. Smith met at St. Paul's on Elm St. today.",
     "Doctor Marsh and Mister Smith met at Saint Paul's on Elm Street today."),
    ("apples, pears, etc.", "apples, pears, et cetera."),
    ("e.g. this", "for example this"),
    ("No. 5", "number five"),
    ("Chapter XII. The End", "Chapter twelve. The End"),
    ("Q&A", "Q and A"),
    ("Visit https://example.com/a-b now.", "Visit example dot com slash a dash b now."),
    ("mail joe@example.org", "mail joe at example dot org"),
])
def test_english_spoken_forms(text, expected):
    assert to_spoken(text, "en") == expected


def test_dashes_are_pauses_and_quotes_are_plain():
    assert to_spoken("Some years ago—never mind how long—I left.", "en") == \
        "Some years ago, never mind how long, I left."
    assert to_spoken("“First,” cried he—“what!”", "en") == '"First," cried he, "what!"'
    assert to_spoken("He stopped—", "en") == "He stopped"
    assert to_spoken("people’s hats", "en") == "people's hats"


def test_emoji_and_decorations_are_not_spoken():
    assert to_spoken("I saw 😀 a 🐳 whale ✨!", "en") == "I saw a whale!"
    assert to_spoken("👍🏽❤️", "en") == ""


# --- Chinese spoken forms -------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("2024年3月15日", "二零二四年三月十五日"),
    ("我买了2个苹果，花了¥100。", "我买了两个苹果，花了一百元。"),
    ("打了50%的折", "打了百分之五十的折"),
    ("气温25℃，跑了5km。", "气温二十五摄氏度，跑了五公里。"),
    ("时间10:05。", "时间十点零五分。"),
    ("电话13812345678。", "电话一三八一二三四五六七八。"),
    ("约12.5元", "约十二点五元"),
    ("共1/3。", "共三分之一。"),
    ("首先，我想祝你——每天都平安。", "首先，我想祝你，每天都平安。"),
    ("今天是2024-03-15。", "今天是二零二四年三月十五日。"),
])
def test_chinese_spoken_forms(text, expected):
    assert to_spoken(text, "zh") == expected


def test_numbers_follow_the_language_around_them():
    assert to_spoken("我有3个apple", "en") == "我有三个apple"
    assert to_spoken("I have 3 apples, 我有5个。", "zh") == "I have three apples, 我有五个。"
    assert to_spoken("我有3个", "en") == "我有三个"


# --- inline controls --------------------------------------------------------------------
def test_controls_are_found():
    kinds = [c.kind for c in find_controls("nin2 hao3 and /həˈloʊ/ then [pause 1.5s] and [PAUSE 2 s]")]
    assert kinds == ["pinyin", "ipa", "marker", "marker"]
    assert find_controls("and/or 3/4 http://a.com/b A1 mp3 IPv4") == []
    assert [c.pause_seconds for c in find_controls("[pause 1.5s]")] == [1.5]


@pytest.mark.parametrize("text, language", [
    ("nin2 hao3，qing3 wen4 nin2 lai2 zi4 na3 zuo4 cheng2 shi4？", "zh"),
    ("您好，请问您来自哪 zuo4 cheng2 shi4？", "zh"),
    ("/həloʊ, meɪ aɪ æsk wɪtʃ sɪti juː ɑːr frʌm?/", "en"),
])
def test_model_card_controls_pass_through_untouched(text, language):
    assert spoken(text, language) == text


def test_controls_inside_text_are_kept_and_the_rest_is_normalized():
    assert spoken("Wait 2 s [pause 1.5s] then go—now.", "en") == "Wait two s [pause 1.5s] then go, now."
    assert spoken("读作 chong2 qing4，共3次。", "zh") == "读作 chong2 qing4，共三次。"
    assert spoken("Say /ˈkwiːkwɛɡ/ 3 times.", "en") == "Say /ˈkwiːkwɛɡ/ three times."
