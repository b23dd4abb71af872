"""Rewrites say only what they declare (issue 16), in every language, and never crash planning."""
from __future__ import annotations

import random

import pytest

from pipeline.text.check import invented_words
from pipeline.text.inline import split_controls
from pipeline.text.normalize import speak_pieces, to_spoken

# What gets rewritten: numbers, money, dates, times, units, ordinals, abbreviations, symbols, URLs.
FORMS = [
    "{n}", "${n}", "€{n}", "£{n}.{c}", "{n}%", "-{n}", "{n} km", "{n}kg", "{n} lbs.", "{d}/{m}/{y}", "{y}-{m}-{d}",
    "{h}:{mi}", "{h}:{mi} p.m.", "{h}:{mi}:{mi} am", "#{n}", "{n}-{n}", "{n}–{n}", "{n}st", "{n}nd", "{n}th",
    "{n}/{c}", "{n},{c}", "{n}.{c}", "Chapter XIV", "Mr. Smith", "St. Paul", "No. {n}", "e.g. this", "Jan. {d}",
    "{d} March {y}", "March {d}, {y}", "0{n}", "{big}", "US${n} million", "A & B", "1 + 1 = 2", "www.ex{n}.com",
    "{n}°C", "第{n}", "{n}年", "{n}个", "{n}개", "{n}円", "{n}時", "{n} €", "{d}.{m}.{y}", "{n} mph", "{n} GB", "3D mp3",
    "{n}-{n}-{n}", "{n}:{mi} a.m.",
]
SENTENCES = {"en": "Word {} word", "zh": "他说{}了", "ja": "これは{}です", "ko": "그것은 {} 입니다",
             "de": "Das ist {} gut", "fr": "Il a {} ici", "es": "Es {} aquí", "it": "Ha {} qui", "pt": "Tem {} aqui",
             "nl": "Het is {} hier"}
NUMBERS = [0, 1, 2, 7, 12, 16, 17, 19, 20, 21, 45, 70, 71, 80, 90, 91, 99, 100, 101, 110, 999, 1000, 1001, 1234,
           1851, 1905, 2000, 2024, 3071, 12345, 100000, 1000000, 2500000, 123456789]


def generated(count: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    cases = []
    for i in range(count):
        language = sorted(SENTENCES)[i % len(SENTENCES)]
        form = rng.choice(FORMS).format(
            n=rng.choice(NUMBERS), c=rng.choice(["5", "50", "05", "99"]), d=rng.randint(1, 31), m=rng.randint(1, 12),
            y=rng.choice([1066, 1700, 1851, 1984, 2000, 2024]), h=rng.randint(0, 24), mi=f"{rng.randint(0, 59):02d}",
            big=rng.choice(["1,000,000", "12,345.67", "3.14159", "1.234,5", "1 234,5"]))
        cases.append((language, SENTENCES[language].format(form)))
    return cases


def test_generated_rewrites_invent_nothing():
    invented = {}
    for language, text in generated(1500):
        model_text = speak_pieces(split_controls(text), language)
        found = invented_words(text, model_text, [language])
        if found:
            invented[text] = (language, model_text, found)
    assert not invented, list(invented.items())[:5]


@pytest.mark.parametrize("language,text,spoken", [
    ("de", "Das ist 1 + 1 = 2.", "Das ist eins plus eins gleich zwei."),
    ("fr", "Donc 2 × 3 = 6.", "Donc deux fois trois égale six."),
    ("es", "Juan & María.", "Juan y María."),
    ("ja", "これは 1 + 1 です", "これは 一 + 一 です"),  # no table: the symbol stays as written
])
def test_spaced_symbols_in_every_language(language, text, spoken):
    """A spaced & + = × ÷ in a language without English or Chinese words for it no longer stops planning."""
    assert to_spoken(text, language) == spoken


def test_a_number_num2words_cannot_read_stays_as_written():
    assert to_spoken("Ha 2500000.99 euro.", "it") == "Ha 2500000.99 euro."  # num2words: ValueError
    assert to_spoken("Harganya 3.5 juta.", "id") == "Harganya 3.5 juta."  # num2words: AttributeError
    assert to_spoken("Ha 2500000 euro.", "it") == "Ha due milioni e cinquecentomila euro."
