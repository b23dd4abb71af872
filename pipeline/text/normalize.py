"""Spoken forms: the text a narrator would say.

Numbers, dates, times, currency, percentages, units, URLs and common
abbreviations become words; dashes become pauses; symbols nobody reads aloud
(emoji, decorations) go. Each number is read in the language of the text around
it, so mixed Chinese and English reads naturally. English and Chinese have rules
of their own here; German, French, Spanish, Japanese and Korean numbers (and those
of any other language num2words covers) are read by `pipeline.text.intl`.

Inline controls (tone-numbered Pinyin, IPA between slashes, ``[pause 1.5s]``)
and lexicon replacements arrive as protected pieces and pass through untouched.
"""
from __future__ import annotations

import re
from typing import Sequence

from pipeline.reading.script import LATIN_SCRIPT_LANGUAGES, CJK_PUNCT_CLASS, HAN_CLASS, HANGUL_CLASS, KANA_CLASS, is_cjk
from pipeline.text import chinese as zh
from pipeline.text import english as en
from pipeline.text import intl

# A piece of text and the kind of control it is (None: ordinary text to normalize).
Piece = tuple[str, "str | None"]

_LATIN_RE = re.compile(r"[A-Za-z\u00c0-\u024f]")
_KANA_RE = re.compile(f"[{KANA_CLASS}]")
_HANGUL_RE = re.compile(f"[{HANGUL_CLASS}]")

# --- URLs and e-mail addresses -------------------------------------------------
_URL_RE = re.compile(
    r"(?:https?://|www\.)[^\s<>\"“”‘’()\[\]]*[^\s<>\"“”‘’()\[\].,;:!?]"
    r"|[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
)
_URL_SCHEME_RE = re.compile(r"^https?://")
_URL_PART_RE = re.compile(r"[A-Za-z]+|\d+|.", re.DOTALL)
_URL_SYMBOLS = {
    "en": {".": "dot", "/": "slash", "@": "at", "-": "dash", "_": "underscore", ":": "colon",
           "?": "question mark", "=": "equals", "&": "and", "#": "hash", "~": "tilde", "+": "plus", "%": "percent"},
    "zh": {".": "点", "/": "斜杠", "@": "艾特", "-": "杠", "_": "下划线", ":": "冒号",
           "?": "问号", "=": "等于", "&": "和", "#": "井号", "~": "波浪号", "+": "加", "%": "百分号"},
}

# --- abbreviations -------------------------------------------------------------
_ABBREVIATION_RE = re.compile(
    r"(?<![A-Za-z.])("
    + "|".join(re.escape(k) for k in sorted(en.ABBREVIATIONS, key=len, reverse=True))
    + r")\.(?![A-Za-z])"
    r"|(?<![A-Za-z])(Mr|Mrs|Ms|Dr)(?= [A-Z])"
    r"|(?<![A-Za-z])(St)\.(?= ?[A-Za-z])"
    r"|(?<![A-Za-z])(No|Nos|no)\.(?= ?\d)"
)
_ROMAN_RE = re.compile(
    r"(?=[abcpsvABCPSV])\b(?i:(" + "|".join(en.ROMAN_CONTEXT_WORDS) + r"))(\.?\s+)([IVXLCDM]+)\b(?![.'’]?[A-Za-z])"
)

# --- numbers -------------------------------------------------------------------
_MONTH_NAMES = "|".join(en.MONTHS + ["Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sept", "Sep", "Oct", "Nov", "Dec"])
_UNIT_NAMES = "|".join(re.escape(u) for u in sorted(set(en.UNITS) | set(zh.UNITS), key=len, reverse=True))
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
# The lookahead up front lets the regex engine skip, at C speed, every place
# where none of the alternatives can start (this pattern dominates planning time).
_NUMBER_RE = re.compile(
    r"(?=[\d$£€¥￥₹#JFMASONDU-])"
    rf"(?:(?P<iso>(?<![\d.])(?P<iso_y>\d{{4}})[-/](?P<iso_m>\d{{1,2}})[-/](?P<iso_d>\d{{1,2}})(?![\d]))"
    rf"|(?P<us>(?<![\d./])(?P<us_m>\d{{1,2}})/(?P<us_d>\d{{1,2}})/(?P<us_y>\d{{4}})(?![\d/]))"
    rf"|(?P<md>\b(?P<md_month>{_MONTH_NAMES})\.? (?P<md_day>\d{{1,2}})(?:st|nd|rd|th)?(?![\d:])(?:,? (?P<md_year>\d{{4}})(?!\d))?)"
    rf"|(?P<dm>(?<![\d.,])(?P<dm_day>\d{{1,2}})(?:st|nd|rd|th)? (?P<dm_month>{_MONTH_NAMES})\b\.?(?:,? (?P<dm_year>\d{{4}})(?!\d))?)"
    rf"|(?P<time>(?<![\d:.])(?P<hour>\d{{1,2}}):(?P<minute>\d{{2}})(?!\d)(?::(?P<second>\d{{2}})(?!\d))?"
    rf"(?: ?(?P<ampm>[AaPp])(?:\.[Mm]\.?|[Mm]\b))?)"
    rf"|(?P<money>(?P<currency>US\$|[$£€¥￥₹]) ?(?P<amount>{_NUM})(?: (?P<scale>thousand|million|billion|trillion)\b)?)"
    rf"|(?P<percent>(?P<pct_neg>(?<![\w.])-)?(?P<pct>{_NUM}) ?[%％])"
    rf"|(?P<ordinal>(?<![\d.,])(?P<ord>\d+)(?:st|nd|rd|th|(?<=[23])d)\b)"
    # a unit's abbreviation period goes with it when the sentence goes on ("5 lbs. of beef")
    rf"|(?P<measure>(?P<measure_neg>(?<![\w.])-)?(?P<qty>{_NUM}) ?(?P<unit>{_UNIT_NAMES})(?![A-Za-z\d])(?:\.(?= [a-z]))?)"
    rf"|(?P<fraction>(?<![\d/.])(?P<numer>\d{{1,3}})/(?P<denom>\d{{1,3}})(?![\d/]))"
    rf"|(?P<grouped>(?<![\d.-])\d+(?:-\d+){{1,4}}(?![\d-]))"
    rf"|(?P<range>(?<![\d.])(?P<low>{_NUM}) ?– ?(?P<high>{_NUM})(?![\d]))"
    rf"|(?P<hash>#(?P<hash_n>\d+))"
    rf"|(?P<number>(?P<neg>(?<![\w.])-)?(?P<num>{_NUM})))"
)

# --- punctuation and symbols -----------------------------------------------------
_DASH_RE = re.compile(r"(?=[\s—―])\s*(?:[—―]+|(?<=\s)[–-](?=\s))\s*")
_CJK_CLASS = f"{HAN_CLASS}{CJK_PUNCT_CLASS}"
# Emoji, pictographs, dingbats, private use, variation selectors, decorative symbols. Invisible
# characters (the zero-width joiner inside an emoji, tag characters) are gone already: text
# arrives cleaned by pipeline.reading.clean.
_UNSPOKEN_RE = re.compile(
    "[\U0001F000-\U0001FAFF\U0001FC00-\U0001FFFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF\u25A0-\u25FF"
    "\uE000-\uF8FF\uFE00-\uFE0F\u20E3©®™†‡¶*_~|\\\\^`<>]+"
)
_SPACED_SYMBOL_RE = re.compile(r"(?<=\s)([&+=×÷])(?=\s)")
_SYMBOL_WORDS = {
    "en": {"&": "and", "+": "plus", "=": "equals", "×": "times", "÷": "divided by"},
    "zh": {"&": "和", "+": "加", "=": "等于", "×": "乘以", "÷": "除以"},
    "de": {"&": "und", "+": "plus", "=": "gleich", "×": "mal", "÷": "geteilt durch"},
    "fr": {"&": "et", "+": "plus", "=": "égale", "×": "fois", "÷": "divisé par"},
    "es": {"&": "y", "+": "más", "=": "igual a", "×": "por", "÷": "dividido entre"},
}
_AMPERSAND_RE = re.compile(r"(?<=[A-Za-z])&(?=[A-Za-z])")
_STRAIGHT_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "‘": "'", "’": "'", "‚": "'"})
# A dash next to these is no pause of its own: the punctuation already is one.
_PUNCT_BEFORE_DASH = frozenset(".,;:!?…。！？，；：、“‘\"'(（[「『")
_PUNCT_AFTER_DASH = frozenset(".,;:!?…。！？，；：、”’\"')）]」』")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([,.;:!?…)\]}。！？，；：、）」』])")
_SPACE_BETWEEN_CJK_RE = re.compile(rf"(?<=[{_CJK_CLASS}]) (?=[{_CJK_CLASS}])")
_SPACES_RE = re.compile(r"\s+")
_CJK_RE = re.compile(f"[{_CJK_CLASS}]")
_DIGIT_RE = re.compile(r"\d")  # every numeric pattern holds a digit
_ROMAN_HINT_RE = re.compile(r"[IVXLCDM]\b")
_SYMBOL_HINT_RE = re.compile(r"[&+=×÷]")
_DASH_HINT_RE = re.compile(r"[—―]| [–-] ")


# Words the rules of this module say themselves, beyond the tables they read: dates ("the
# first of May"), times ("five o'clock", "ten oh five a m"), money ("and"), ranges ("to"), "minus",
# "percent", "number 5", "St." (Saint or Street); in Chinese 上午 下午 点 分 秒 百分之 第 至 号 两 ...
_RULE_WORDS = {
    "en": "the of to and o'clock oh a m p seconds minus point percent number numbers over Saint Street",
    "zh": "负两上午下午点分秒年月日百分之第至号千百万十亿万亿",
}


def rewrite_products(language: str) -> tuple[str, ...]:
    """What normalizing text of `language` may say that the text does not: spoken numbers, dates,
    money, units, abbreviations, URL and symbol words. Number readings of the language come from
    its module (English, Chinese, or num2words for the others); what surrounds them from the rules
    here. For the check that normalization invents nothing (`pipeline.text.check`)."""
    said = [_RULE_WORDS.get(language, "")]
    said += [*_URL_SYMBOLS.get(language, {}).values(), *_SYMBOL_WORDS.get(language, {}).values()]
    if language == "en":
        said += en.spoken_words()
    elif language == "zh":
        said += zh.spoken_words()
    else:
        said += intl.spoken_words(language)
    return tuple(said)


def speak_pieces(pieces: Sequence[Piece], language: str) -> str:
    """Model text from pieces: plain ones normalized, controls kept, spaced where they meet words."""
    out: list[str] = []
    previous_kind: str | None = None
    for text, kind in pieces:
        spoken = to_spoken(text, language) if kind is None else text
        if not spoken:
            continue
        if out and (kind is not None or previous_kind is not None):
            spoken = _space_between(out[-1], spoken)
        out.append(spoken)
        previous_kind = kind
    return _SPACES_RE.sub(" ", "".join(out)).strip()


def _space_between(before: str, after: str) -> str:
    """`after`, with a leading space when it would otherwise touch a word (Han characters included)."""
    last, first = before[-1], after[0]
    if (last.isalnum() or last in "/]") and (first.isalnum() or first in "/["):
        return " " + after
    return after


def to_spoken(text: str, language: str) -> str:
    """Spoken form of plain text (no inline controls) whose main language is `language`."""
    if not text:
        return text
    # Each rule runs only where its trigger characters occur: this is the hot path of planning.
    if "@" in text or "://" in text or "www." in text:
        text = _URL_RE.sub(lambda m: _speak_url(m, language), text)
    if _ROMAN_HINT_RE.search(text):
        text = _ROMAN_RE.sub(_speak_roman, text)
    if language in ("en", "zh"):  # English abbreviations; "Dr." is no Doctor in a German book
        text = _ABBREVIATION_RE.sub(_speak_abbreviation, text)
    if _DIGIT_RE.search(text):
        text = intl.canonical_numbers(text, language)
        text = _NUMBER_RE.sub(lambda m: _speak_number(m, language), text)
    if _SYMBOL_HINT_RE.search(text):
        text = _AMPERSAND_RE.sub(" and ", text)
        text = _SPACED_SYMBOL_RE.sub(lambda m: _speak_symbol(m, language), text)
    if _DASH_HINT_RE.search(text):
        text = _DASH_RE.sub(lambda m: _speak_dash(m, language), text)
    text = _UNSPOKEN_RE.sub(" ", text)
    text = _tidy(text)
    return text.translate(_STRAIGHT_QUOTES) if language == "en" else text


def _speak_symbol(m: re.Match, language: str) -> str:
    """A spaced & + = × ÷ in words of the language around it (as written where there is no table)."""
    symbol: str = m.group(1)  # the group always takes part in a match
    return _SYMBOL_WORDS.get(_context(m, language), {}).get(symbol, symbol)


def _speak_dash(m: re.Match, language: str) -> str:
    """A dash is a pause: a comma, unless it stands at an edge of the text or beside punctuation."""
    # The match took the whitespace around the dash, so its neighbours are the characters beside it.
    before = m.string[m.start() - 1:m.start()]
    after = m.string[m.end():m.end() + 1]
    if not before or not after or before in _PUNCT_BEFORE_DASH or after in _PUNCT_AFTER_DASH:
        return " "
    return "，" if _context(m, language) == "zh" else ", "


def _tidy(text: str) -> str:
    text = _SPACES_RE.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text)
    if _CJK_RE.search(text):
        text = _SPACE_BETWEEN_CJK_RE.sub("", text)
    return text.strip()


def _context(m: re.Match, default: str) -> str:
    """Language of the text around a match, from the nearest character on either side.

    Han or kana: Chinese, or Japanese in Japanese text (kana alone says Japanese); Hangul:
    Korean; Latin letters: the text's language when it is written in them, else English.
    """
    text = m.string
    before = text[max(0, m.start() - 3):m.start()].rstrip()
    after = text[m.end():m.end() + 3].lstrip()
    near = (before[-1:] or " ") + (after[:1] or " ")
    if any(is_cjk(ch) for ch in near):
        return "ja" if default == "ja" or _KANA_RE.search(near) else "zh"
    if _HANGUL_RE.search(near):
        return "ko"
    if _LATIN_RE.search(near):
        return default if default in LATIN_SCRIPT_LANGUAGES else "en"
    return default


def _speak_url(m: re.Match, language: str) -> str:
    lang = "zh" if _context(m, language) == "zh" else "en"
    words = []
    for part in _URL_PART_RE.findall(_URL_SCHEME_RE.sub("", m.group(0))):
        if part.isdigit():
            words.append(en.digits(part) if lang == "en" else zh.digits(part))
        elif part.isalpha():
            words.append(part)
        elif part in _URL_SYMBOLS[lang]:
            words.append(_URL_SYMBOLS[lang][part])
    return " ".join(words)


def _speak_roman(m: re.Match) -> str:
    value = en.roman_to_int(m.group(3))
    if value is None:
        return m.group(0)
    return m.group(1) + m.group(2) + en.cardinal(value)


def _speak_abbreviation(m: re.Match) -> str:
    if m.group(1):
        spoken = en.ABBREVIATIONS[m.group(1)]
        # At the very end of the text the abbreviation's period also ends the sentence.
        return spoken + "." if m.end() == len(m.string) else spoken
    if m.group(2):
        return en.ABBREVIATIONS[m.group(2)]
    if m.group(3):
        nxt = m.string[m.end():].lstrip()[:1]
        return "Saint" if nxt.isupper() else "Street"
    return "numbers" if m.group(4) == "Nos" else "number"


def _speak_number(m: re.Match, language: str) -> str:
    lang = _context(m, language)
    kind = next(name for name in _NUMBER_KINDS if m.group(name) is not None)
    speakers = _EN_SPEAKERS if lang == "en" else _ZH_SPEAKERS if lang == "zh" else intl.speaker(lang)
    spoken = speakers[kind](m) if speakers is not None else None
    if spoken is None:
        return m.group(0)
    # Words made from digits glued to letters ("mp3", "3D") need a space to stay words.
    text = m.string
    if m.start() > 0 and _glued(text[m.start() - 1], lang):
        spoken = " " + spoken
    if m.end() < len(text) and _glued(text[m.end()], lang):
        spoken += " "
    return spoken


def _glued(neighbour: str, lang: str) -> bool:
    return bool(_LATIN_RE.match(neighbour)) or lang == "en" and neighbour.isalnum()


_NUMBER_KINDS = (
    "iso", "us", "md", "dm", "time", "money", "percent", "ordinal", "measure", "fraction",
    "grouped", "range", "hash", "number",
)


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def _read_as_digits(text: str) -> bool:
    """Codes, phone and account numbers: a leading zero, or ten digits or more without grouping."""
    return "," not in text and (len(text) > 1 and text[0] == "0" or len(text) >= 10)


def _valid_date(month: int, day: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= 31


# --- English --------------------------------------------------------------------
def _en_plain_number(text: str, negative: bool = False, year_ok: bool = False) -> str:
    sign = "minus " if negative else ""
    if "." in text:
        return sign + en.decimal(text)
    if _read_as_digits(text):
        return en.digits(text)
    value = _int(text)
    if year_ok and "," not in text and not negative and len(text) == 4:
        return en.year(value)
    return sign + en.cardinal(value)


def _en_date(month: int, day: int, year: str | None) -> str:
    spoken = f"{en.MONTHS[month - 1]} {en.ordinal(day)}"
    return spoken + (f", {en.year(int(year))}" if year else "")


def _en_month_index(name: str) -> int:
    for i, month in enumerate(en.MONTHS):
        if month.startswith(name[:3]):
            return i + 1
    raise AssertionError(name)


def _en_iso(m: re.Match) -> str | None:
    month, day = int(m.group("iso_m")), int(m.group("iso_d"))
    return _en_date(month, day, m.group("iso_y")) if _valid_date(month, day) else _en_grouped_digits(m.group(0))


def _en_us(m: re.Match) -> str | None:
    first, second = int(m.group("us_m")), int(m.group("us_d"))
    if _valid_date(first, second):
        return _en_date(first, second, m.group("us_y"))
    if _valid_date(second, first):
        return _en_date(second, first, m.group("us_y"))
    return None


def _en_md(m: re.Match) -> str | None:
    day = int(m.group("md_day"))
    if not 1 <= day <= 31:
        return None
    return _en_date(_en_month_index(m.group("md_month")), day, m.group("md_year"))


def _en_dm(m: re.Match) -> str | None:
    day = int(m.group("dm_day"))
    if not 1 <= day <= 31:
        return None
    month = en.MONTHS[_en_month_index(m.group("dm_month")) - 1]
    year = m.group("dm_year")
    return f"the {en.ordinal(day)} of {month}" + (f", {en.year(int(year))}" if year else "")


def _en_time(m: re.Match) -> str | None:
    hour, minute = int(m.group("hour")), int(m.group("minute"))
    if hour > 24 or minute > 59:
        return None
    ampm = m.group("ampm")
    if minute == 0:
        spoken = en.cardinal(hour) + ("" if ampm else " o'clock")
    elif minute < 10:
        spoken = f"{en.cardinal(hour)} oh {en.cardinal(minute)}"
    else:
        spoken = f"{en.cardinal(hour)} {en.cardinal(minute)}"
    if m.group("second"):
        spoken += f" and {en.cardinal(int(m.group('second')))} seconds"
    if ampm:
        spoken += " a m" if ampm.lower() == "a" else " p m"
        if m.group(0).endswith(".") and m.end() == len(m.string):
            spoken += "."  # "p.m." also ended the sentence
    return spoken


def _en_money(m: re.Match) -> str:
    symbol = "$" if m.group("currency") == "US$" else m.group("currency").replace("￥", "¥")
    one, many, minor_one, minor_many = en.CURRENCIES[symbol]
    amount, scale = m.group("amount"), m.group("scale")
    if scale:
        return f"{_en_plain_number(amount)} {scale} {many}"
    whole, _, cents = amount.replace(",", "").partition(".")
    units = int(whole)
    if cents and len(cents) <= 2:
        minor = int(cents.ljust(2, "0"))
        parts = []
        if units:
            parts.append(f"{en.cardinal(units)} {one if units == 1 else many}")
        if minor or not units:
            parts.append(f"{en.cardinal(minor)} {minor_one if minor == 1 else minor_many}")
        return " and ".join(parts)
    if cents:
        return f"{en.decimal(amount)} {many}"
    return f"{en.cardinal(units)} {one if units == 1 else many}"


def _en_percent(m: re.Match) -> str:
    return _en_plain_number(m.group("pct"), bool(m.group("pct_neg"))) + " percent"


def _en_ordinal(m: re.Match) -> str:
    return en.ordinal(int(m.group("ord")))


def _en_measure(m: re.Match) -> str | None:
    unit = m.group("unit")
    if unit not in en.UNITS:
        return None
    qty = m.group("qty")
    one, many = en.UNITS[unit]
    sign = "minus " if m.group("measure_neg") else ""
    number = en.decimal(qty) if "." in qty else en.cardinal(_int(qty))
    return f"{sign}{number} {one if qty == '1' else many}"


def _en_fraction(m: re.Match) -> str | None:
    denominator = int(m.group("denom"))
    if denominator == 0:
        return None
    return en.fraction(int(m.group("numer")), denominator)


def _is_range(groups: list[str]) -> bool:
    """Two hyphenated numbers that read as a range (10-20, 1850-1860), not a phone number."""
    return len(groups) == 2 and (len(groups[0]) + len(groups[1]) < 7 or len(groups[0]) == len(groups[1]) == 4)


def _en_grouped_digits(text: str) -> str:
    groups = text.split("-")
    if _is_range(groups):
        return f"{_en_plain_number(groups[0], year_ok=True)} to {_en_plain_number(groups[1], year_ok=True)}"
    return ", ".join(en.digits(g) for g in groups)


def _en_grouped(m: re.Match) -> str:
    return _en_grouped_digits(m.group(0))


def _en_range(m: re.Match) -> str:
    return f"{_en_plain_number(m.group('low'), year_ok=True)} to {_en_plain_number(m.group('high'), year_ok=True)}"


def _en_hash(m: re.Match) -> str:
    return "number " + en.cardinal(int(m.group("hash_n")))


def _en_number(m: re.Match) -> str:
    return _en_plain_number(m.group("num"), bool(m.group("neg")), year_ok=True)


_EN_SPEAKERS = {
    "iso": _en_iso, "us": _en_us, "md": _en_md, "dm": _en_dm, "time": _en_time, "money": _en_money,
    "percent": _en_percent, "ordinal": _en_ordinal, "measure": _en_measure, "fraction": _en_fraction,
    "grouped": _en_grouped, "range": _en_range, "hash": _en_hash, "number": _en_number,
}


# --- Chinese --------------------------------------------------------------------
def _zh_plain_number(text: str, negative: bool = False, next_char: str = "") -> str:
    sign = "负" if negative else ""
    if "." in text:
        return sign + zh.decimal(text)
    if _read_as_digits(text):
        return zh.digits(text)
    if next_char == "年" and len(text) == 4 and not negative:
        return zh.digits(text)
    value = _int(text)
    if value == 2 and next_char in zh.MEASURE_WORDS and not negative:
        return "两"
    return sign + zh.cardinal(value)


def _next_char(m: re.Match) -> str:
    return m.string[m.end():m.end() + 1]


def _zh_date(year: str | None, month: int, day: int) -> str:
    spoken = f"{zh.digits(year)}年" if year else ""
    return spoken + f"{zh.cardinal(month)}月{zh.cardinal(day)}日"


def _zh_iso(m: re.Match) -> str | None:
    month, day = int(m.group("iso_m")), int(m.group("iso_d"))
    return _zh_date(m.group("iso_y"), month, day) if _valid_date(month, day) else _zh_grouped(m)


def _zh_us(m: re.Match) -> str | None:
    first, second = int(m.group("us_m")), int(m.group("us_d"))
    if _valid_date(first, second):
        return _zh_date(m.group("us_y"), first, second)
    if _valid_date(second, first):
        return _zh_date(m.group("us_y"), second, first)
    return None


def _zh_md(m: re.Match) -> str | None:
    day = int(m.group("md_day"))
    if not 1 <= day <= 31:
        return None
    return _zh_date(m.group("md_year"), _en_month_index(m.group("md_month")), day)


def _zh_dm(m: re.Match) -> str | None:
    day = int(m.group("dm_day"))
    if not 1 <= day <= 31:
        return None
    return _zh_date(m.group("dm_year"), _en_month_index(m.group("dm_month")), day)


def _zh_time(m: re.Match) -> str | None:
    hour, minute = int(m.group("hour")), int(m.group("minute"))
    if hour > 24 or minute > 59:
        return None
    ampm = m.group("ampm")
    prefix = "" if not ampm else "上午" if ampm.lower() == "a" else "下午"
    spoken = prefix + ("两" if hour == 2 else zh.cardinal(hour)) + "点"
    if minute:
        spoken += ("零" if minute < 10 else "") + zh.cardinal(minute) + "分"
    if m.group("second"):
        spoken += zh.cardinal(int(m.group("second"))) + "秒"
    return spoken


def _zh_money(m: re.Match) -> str:
    symbol = "$" if m.group("currency") == "US$" else m.group("currency")
    scale = {"thousand": "千", "million": "百万", "billion": "十亿", "trillion": "万亿"}.get(m.group("scale") or "", "")
    currency = zh.CURRENCIES[symbol]
    if m.string.startswith(currency, m.end()) or currency == "元" and m.string.startswith(("块", "圆"), m.end()):
        currency = ""  # ￥73.5元: the currency is written after the number already
    return _zh_plain_number(m.group("amount")) + scale + currency


def _zh_percent(m: re.Match) -> str:
    return ("负" if m.group("pct_neg") else "") + "百分之" + _zh_plain_number(m.group("pct"))


def _zh_ordinal(m: re.Match) -> str:
    return "第" + zh.cardinal(int(m.group("ord")))


def _zh_measure(m: re.Match) -> str | None:
    unit = m.group("unit")
    if unit not in zh.UNITS:
        return None
    return _zh_plain_number(m.group("qty"), bool(m.group("measure_neg"))) + zh.UNITS[unit]


def _zh_fraction(m: re.Match) -> str | None:
    denominator = int(m.group("denom"))
    if denominator == 0:
        return None
    return zh.cardinal(denominator) + "分之" + zh.cardinal(int(m.group("numer")))


def _zh_grouped(m: re.Match) -> str:
    groups = m.group(0).split("-")
    if _is_range(groups):
        return f"{_zh_plain_number(groups[0])}至{_zh_plain_number(groups[1], next_char=_next_char(m))}"
    return "，".join(zh.digits(g) for g in groups)


def _zh_range(m: re.Match) -> str:
    return f"{_zh_plain_number(m.group('low'))}至{_zh_plain_number(m.group('high'), next_char=_next_char(m))}"


def _zh_hash(m: re.Match) -> str:
    return zh.cardinal(int(m.group("hash_n"))) + "号"


def _zh_number(m: re.Match) -> str:
    return _zh_plain_number(m.group("num"), bool(m.group("neg")), _next_char(m))


_ZH_SPEAKERS = {
    "iso": _zh_iso, "us": _zh_us, "md": _zh_md, "dm": _zh_dm, "time": _zh_time, "money": _zh_money,
    "percent": _zh_percent, "ordinal": _zh_ordinal, "measure": _zh_measure, "fraction": _zh_fraction,
    "grouped": _zh_grouped, "range": _zh_range, "hash": _zh_hash, "number": _zh_number,
}
