"""Spoken numbers for German, French, Spanish, Japanese and Korean (num2words), and for any
other language num2words covers.

`speaker(language)` gives, for a number match of `pipeline.text.normalize` (its named groups),
the words a narrator of that language would say, or None to leave the match as written.
German, French and Spanish write "1.234,5" (French "1 234,5"): `canonical_numbers` turns those
into the "1234.5" the shared number pattern reads, before it runs.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable

from num2words import CONVERTER_CLASSES, num2words

Speaker = Callable[[re.Match], "str | None"]

MONTHS = {
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
}
CURRENCIES = {
    "de": {"$": "Dollar", "€": "Euro", "£": "Pfund", "¥": "Yen", "₹": "Rupien"},
    "fr": {"$": "dollars", "€": "euros", "£": "livres", "¥": "yens", "₹": "roupies"},
    "es": {"$": "dólares", "€": "euros", "£": "libras", "¥": "yenes", "₹": "rupias"},
    "ja": {"$": "ドル", "€": "ユーロ", "£": "ポンド", "¥": "円", "₹": "ルピー"},
    "ko": {"$": "달러", "€": "유로", "£": "파운드", "¥": "엔", "₹": "루피"},
}
MINOR = {
    "de": {"$": "Cent", "€": "Cent", "£": "Pence"},
    "fr": {"$": "cents", "€": "centimes", "£": "pence"},
    "es": {"$": "centavos", "€": "céntimos", "£": "peniques"},
}
PERCENT = {"de": "Prozent", "fr": "pour cent", "es": "por ciento", "ja": "パーセント", "ko": "퍼센트"}
NUMBER_WORD = {"de": "Nummer", "fr": "numéro", "es": "número"}
RANGE_WORD = {"de": "bis", "fr": "à", "es": "a", "ja": "から", "ko": "에서"}
MINUS = {"de": "minus", "fr": "moins", "es": "menos", "ja": "マイナス", "ko": "마이너스"}
UNITS = {
    "de": {"km": "Kilometer", "m": "Meter", "cm": "Zentimeter", "mm": "Millimeter", "kg": "Kilogramm",
           "g": "Gramm", "mg": "Milligramm", "ml": "Milliliter", "°C": "Grad Celsius", "℃": "Grad Celsius",
           "°": "Grad", "km/h": "Kilometer pro Stunde", "min": "Minuten", "h": "Stunden"},
    "fr": {"km": "kilomètres", "m": "mètres", "cm": "centimètres", "mm": "millimètres", "kg": "kilogrammes",
           "g": "grammes", "mg": "milligrammes", "ml": "millilitres", "°C": "degrés Celsius",
           "℃": "degrés Celsius", "°": "degrés", "km/h": "kilomètres par heure", "min": "minutes"},
    "es": {"km": "kilómetros", "m": "metros", "cm": "centímetros", "mm": "milímetros", "kg": "kilogramos",
           "g": "gramos", "mg": "miligramos", "ml": "mililitros", "°C": "grados Celsius", "℃": "grados Celsius",
           "°": "grados", "km/h": "kilómetros por hora", "min": "minutos"},
    "ja": {"km": "キロメートル", "m": "メートル", "cm": "センチメートル", "mm": "ミリメートル", "kg": "キログラム",
           "g": "グラム", "mg": "ミリグラム", "ml": "ミリリットル", "°C": "度", "℃": "度", "°": "度",
           "km/h": "キロメートル毎時", "min": "分"},
    "ko": {"km": "킬로미터", "m": "미터", "cm": "센티미터", "mm": "밀리미터", "kg": "킬로그램", "g": "그램",
           "mg": "밀리그램", "ml": "밀리리터", "°C": "도", "℃": "도", "°": "도", "km/h": "시속 킬로미터", "min": "분"},
}
# Korean says the hour with native numbers (세 시), the minutes with Sino-Korean ones (삼십 분).
_KO_HOURS = ("영 한 두 세 네 다섯 여섯 일곱 여덟 아홉 열 열한 열두 열세 열네 열다섯 열여섯 열일곱 열여덟 열아홉 "
             "스물 스물한 스물두 스물세 스물네").split()
_JOINED = ("ja",)  # written without spaces between words

_DE_ES_NUMBER_RE = re.compile(r"(?<![\d.,])\d{1,3}(?:\.\d{3})+(?:,\d+)?(?![\d]|[.,]\d)|(?<![\d.,])\d+,\d+(?![\d]|[.,]\d)")
_FR_NUMBER_RE = re.compile(
    r"(?<![\d.,])\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?:,\d+)?(?![\d]|[.,]\d)|(?<![\d.,])\d+,\d+(?![\d]|[.,]\d)")


_DOTTED_DATE_RE = re.compile(r"(?<![\d.])(\d{1,2})\.(\d{1,2})\.(\d{4})(?![\d]|\.\d)")
_AMOUNT_THEN_SYMBOL_RE = re.compile(r"(?<![\d.,])(\d[\d.,]*\d|\d)[ \u00a0\u202f]?([€$£¥₹])")
# Korean counts things with native numbers before these counters (세 개, 두 명, 열 살).
_KO_COUNTERS = ("개", "명", "살", "마리", "권", "잔", "병", "장", "대", "번째", "사람", "가지", "달")
_KO_NATIVE_ONES = ("", "한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉")
_KO_NATIVE_TENS = ("", "열", "스물", "서른", "마흔", "쉰", "예순", "일흔", "여든", "아흔")


def korean_native(n: int) -> str:
    """1..99 in native Korean as said before a counter (한, 스무, 서른두)."""
    tens, ones = divmod(n, 10)
    if n == 20:
        return "스무"
    return _KO_NATIVE_TENS[tens] + _KO_NATIVE_ONES[ones]


# Words the speakers below say beyond numbers and the tables above (time, dates, "number 5").
_RULE_WORDS = {"de": "Uhr", "fr": "heure heures premier", "es": "y de", "ja": "時 分 年 月 日 番",
               "ko": "시 분 년 월 일 번"}


@lru_cache(maxsize=None)
def number_words(language: str) -> tuple[str, ...]:
    """num2words' readings of representative numbers in `language` (0 to 100, hundreds, thousands,
    millions, ..., a decimal, day ordinals), and the pieces that compounds are made of ("hundert",
    "tausend": "zweitausend" less "zwei"). A reading of any number is made of these."""
    if not supported(language):
        return ()
    scales = [*(k * 100 for k in range(1, 10)), *(k * 1000 for k in range(1, 10)),
              *(m * 10**e for e in (6, 9, 12) for m in (1, 2))]
    # n + 1 too: the scale may be said another way with something after it ("cento e um", not "cem").
    said = [num2words(n, lang=language) for n in [*range(101), *scales, *(n + 1 for n in scales)]]
    # Italian elides a hundred's last vowel before "otto" and "ottanta" (settecentottanta).
    said += [num2words(k * 100, lang=language)[:-1] for k in range(1, 10)]
    said.append(num2words("1.5", lang=language))
    try:
        said += [num2words(n, lang=language, to="ordinal") for n in range(1, 32)]
    except (NotImplementedError, AttributeError, TypeError):
        pass  # no ordinals in this language: the speakers do not use them either
    for scale in (100, 1000):
        for k in range(2, 10):
            head, whole = num2words(k, lang=language), num2words(k * scale, lang=language)
            if whole.startswith(head) and len(whole) > len(head):
                said.append(whole[len(head):])
    return tuple(said)


def spoken_words(language: str) -> tuple[str, ...]:
    """What the speakers of `language` can say: number readings (see `number_words`) and the words
    of the tables. For the check that normalization invents nothing."""
    said = list(number_words(language)) + MONTHS.get(language, "").split() + _RULE_WORDS.get(language, "").split()
    for table in (CURRENCIES, MINOR, UNITS):
        said += table.get(language, {}).values()
    for table in (PERCENT, NUMBER_WORD, RANGE_WORD, MINUS):
        said += [table[language]] if language in table else []
    if language == "ko":
        said += [*_KO_HOURS, *_KO_NATIVE_ONES, *_KO_NATIVE_TENS, "스무"]
    return tuple(said)


def supported(language: str) -> bool:
    return language in CONVERTER_CLASSES


def canonical_numbers(text: str, language: str) -> str:
    """German/Spanish "1.234,5" and French "1 234,5" as "1234.5"; other languages unchanged."""
    if language in ("de", "es"):
        pattern = _DE_ES_NUMBER_RE
    elif language == "fr":
        pattern = _FR_NUMBER_RE
    else:
        return text
    if "." in text:
        text = _DOTTED_DATE_RE.sub(r"\3-\2-\1", text)  # 15.01.2024 is a date
    if any(symbol in text for symbol in "€$£¥₹"):
        text = _AMOUNT_THEN_SYMBOL_RE.sub(r"\2\1", text)  # 20 € reads like €20
    if "," not in text and "." not in text and " " not in text:
        return text
    return pattern.sub(lambda m: re.sub(r"[.\s\u00a0\u202f]", "", m.group(0)).replace(",", "."), text)


def cardinal(text: str, language: str, year_ok: bool = False) -> str:
    """Words for a number written "1234" or "1234.5" (a leading zero or ten digits: digit by digit)."""
    text = text.replace(",", "")
    if "." not in text and (len(text) > 1 and text[0] == "0" or len(text) >= 10):
        return digits(text, language)
    if year_ok and language in ("de", "fr", "es") and "." not in text and len(text) == 4 and 1100 <= int(text) < 2100:
        return num2words(int(text), lang=language, to="year")
    return num2words(text if "." in text else int(text), lang=language)


def digits(text: str, language: str) -> str:
    """Digit by digit."""
    return ("" if language in _JOINED else " ").join(num2words(int(d), lang=language) for d in text if d.isdigit())


@lru_cache(maxsize=None)
def speaker(language: str) -> dict[str, Speaker] | None:
    """The number speakers of `language`, or None when num2words does not cover it."""
    if not supported(language):
        return None
    lang = language
    sep = "" if lang in _JOINED else " "

    def number(m: re.Match) -> str:
        sign = MINUS.get(lang, "-") + sep if m.group("neg") else ""
        text = m.group("num")
        if lang == "ko" and not sign and text.isdigit() and 0 < int(text) < 100 and text[0] != "0" \
                and m.string[m.end():].lstrip().startswith(_KO_COUNTERS):
            return korean_native(int(text))
        return sign + cardinal(text, lang, year_ok=True)

    def money(m: re.Match) -> str | None:
        symbol = "$" if m.group("currency") == "US$" else m.group("currency").replace("￥", "¥")
        word = CURRENCIES.get(lang, {}).get(symbol)
        if word is None:
            return None
        amount = m.group("amount").replace(",", "")
        if m.string.startswith(word, m.end()) or lang == "ja" and m.string.startswith("円", m.end()):
            return cardinal(amount, lang)  # "¥300円": the currency is written after it already
        whole, _, cents = amount.partition(".")
        minor = MINOR.get(lang, {}).get(symbol)
        if minor and len(cents) == 2:  # 12,50 € is twelve euros fifty, not twelve point five
            spoken = cardinal(whole, lang) + sep + word
            return spoken + (f" {cardinal(cents.lstrip('0'), lang)} {minor}" if int(cents) else "")
        return cardinal(amount, lang) + sep + word

    def percent(m: re.Match) -> str | None:
        if lang not in PERCENT:
            return None
        sign = MINUS[lang] + sep if m.group("pct_neg") else ""
        return sign + cardinal(m.group("pct"), lang) + sep + PERCENT[lang]

    def measure(m: re.Match) -> str | None:
        word = UNITS.get(lang, {}).get(m.group("unit"))
        if word is None:
            return None
        sign = MINUS[lang] + sep if m.group("measure_neg") else ""
        return sign + cardinal(m.group("qty"), lang) + sep + word

    def time(m: re.Match) -> str | None:
        hour, minute = int(m.group("hour")), int(m.group("minute"))
        if hour > 24 or minute > 59 or m.group("ampm"):
            return None
        h, mi = num2words(hour, lang=lang), num2words(minute, lang=lang)
        if lang == "de":
            return f"{h} Uhr" + (f" {mi}" if minute else "")
        if lang == "fr":
            return f"{h} heure{'s' if hour > 1 else ''}" + (f" {mi}" if minute else "")
        if lang == "es":
            return h + (f" y {mi}" if minute else "")
        if lang == "ja":
            return f"{h}時" + (f"{mi}分" if minute else "")
        if lang == "ko":
            return f"{_KO_HOURS[hour]} 시" + (f" {mi} 분" if minute else "")
        return None

    def date(year: str | None, month: int, day: int) -> str | None:
        if not (1 <= month <= 12 and 1 <= day <= 31):
            return None
        y = cardinal(year, lang, year_ok=True) if year else ""
        if lang == "ja":
            return (f"{y}年" if y else "") + f"{num2words(month, lang=lang)}月{num2words(day, lang=lang)}日"
        if lang == "ko":
            return (f"{y}년 " if y else "") + f"{num2words(month, lang=lang)}월 {num2words(day, lang=lang)}일"
        if lang not in MONTHS:
            return None
        name = MONTHS[lang].split()[month - 1]
        if lang == "de":
            spoken = f"{num2words(day, lang=lang, to='ordinal')} {name}"
        elif lang == "fr":
            spoken = f"{'premier' if day == 1 else num2words(day, lang=lang)} {name}"
        else:
            spoken = f"{num2words(day, lang=lang)} de {name}" + (" de" if y else "")
        return spoken + (f" {y}" if y else "")

    def iso(m: re.Match) -> str | None:
        return date(m.group("iso_y"), int(m.group("iso_m")), int(m.group("iso_d")))

    def us(m: re.Match) -> str | None:
        # Outside English, day/month/year is the usual order.
        first, second = int(m.group("us_m")), int(m.group("us_d"))
        return date(m.group("us_y"), second, first) if second <= 12 else date(m.group("us_y"), first, second)

    def pair(low: str, high: str) -> str | None:
        word = RANGE_WORD.get(lang)
        if word is None:
            return None
        low_words, high_words = cardinal(low, lang, year_ok=True), cardinal(high, lang, year_ok=True)
        return f"{low_words}{word}{high_words}" if lang == "ja" else f"{low_words} {word} {high_words}"

    def grouped(m: re.Match) -> str | None:
        groups = m.group(0).split("-")
        if len(groups) == 2 and (len(groups[0]) + len(groups[1]) < 7 or len(groups[0]) == len(groups[1]) == 4):
            return pair(*groups)
        return ", ".join(digits(g, lang) for g in groups)  # a phone or code number

    def hashed(m: re.Match) -> str | None:
        n = num2words(int(m.group("hash_n")), lang=lang)
        if lang == "ja":
            return n + "番"
        if lang == "ko":
            return n + "번"
        return f"{NUMBER_WORD[lang]} {n}" if lang in NUMBER_WORD else None

    def leave(m: re.Match) -> None:
        return None

    speakers = {
        "iso": iso, "us": us, "md": leave, "dm": leave, "time": time, "money": money, "percent": percent,
        "ordinal": leave, "measure": measure, "fraction": leave, "grouped": grouped,
        "range": lambda m: pair(m.group("low"), m.group("high")), "hash": hashed, "number": number,
    }
    return {kind: _as_written_on_failure(speak) for kind, speak in speakers.items()}


def _as_written_on_failure(speak: Speaker) -> Speaker:
    """`speak`, leaving the match as written where num2words cannot read it (Italian fails on
    "2500000.99" with a ValueError, Indonesian and Vietnamese on any decimal with an AttributeError):
    a number read as digits is better than a book that cannot be planned."""
    def guarded(m: re.Match) -> str | None:
        try:
            return speak(m)
        except (ValueError, ArithmeticError, NotImplementedError, AttributeError):
            return None
    return guarded
