"""English words for numbers, and the word tables the English normalizer reads."""
from __future__ import annotations

from functools import lru_cache

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [
    (10**15, "quadrillion"), (10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"),
]
_ORDINAL_IRREGULAR = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}

MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]

# symbol -> (singular, plural, minor unit singular, minor unit plural)
CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "sen", "sen"),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}

# unit abbreviation after a number -> (singular, plural)
UNITS = {
    "km": ("kilometer", "kilometers"), "m": ("meter", "meters"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "mi": ("mile", "miles"), "ft": ("foot", "feet"),
    "yd": ("yard", "yards"), "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"),
    "mg": ("milligram", "milligrams"), "lb": ("pound", "pounds"), "lbs": ("pounds", "pounds"),
    "oz": ("ounce", "ounces"), "ml": ("milliliter", "milliliters"), "mph": ("mile per hour", "miles per hour"),
    "km/h": ("kilometer per hour", "kilometers per hour"), "kph": ("kilometer per hour", "kilometers per hour"),
    "°C": ("degree Celsius", "degrees Celsius"), "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "℃": ("degree Celsius", "degrees Celsius"), "℉": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"), "ms": ("millisecond", "milliseconds"), "min": ("minute", "minutes"),
    "hr": ("hour", "hours"), "hrs": ("hours", "hours"), "Hz": ("hertz", "hertz"), "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"), "GHz": ("gigahertz", "gigahertz"), "KB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"), "GB": ("gigabyte", "gigabytes"), "TB": ("terabyte", "terabytes"),
    "kW": ("kilowatt", "kilowatts"), "W": ("watt", "watts"), "V": ("volt", "volts"),
}

# abbreviation (without its final period) -> spoken form
ABBREVIATIONS = {
    "Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Dr": "Doctor", "Prof": "Professor",
    "Jr": "Junior", "Sr": "Senior", "Capt": "Captain", "Col": "Colonel", "Gen": "General",
    "Lt": "Lieutenant", "Sgt": "Sergeant", "Rev": "Reverend", "Hon": "Honorable", "Gov": "Governor",
    "Mt": "Mount", "Ft": "Fort", "Ave": "Avenue", "Blvd": "Boulevard", "Inc": "Incorporated",
    "Ltd": "Limited", "Corp": "Corporation", "Dept": "Department", "Univ": "University",
    "vs": "versus", "etc": "et cetera", "approx": "approximately", "e.g": "for example", "i.e": "that is",
    "Jan": "January", "Feb": "February", "Mar": "March", "Apr": "April", "Aug": "August",
    "Sept": "September", "Sep": "September", "Oct": "October", "Nov": "November", "Dec": "December",
}

# Words before which a Roman numeral is a number ("Chapter XII" -> "Chapter twelve").
ROMAN_CONTEXT_WORDS = ("chapter", "book", "part", "volume", "vol", "act", "scene", "section", "canto", "appendix")


def cardinal(n: int) -> str:
    if n < 0:
        return "minus " + cardinal(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("-" + _ONES[ones] if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + (" " + cardinal(rest) if rest else "")
    for value, name in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            return cardinal(high) + " " + name + (" " + cardinal(rest) if rest else "")
    raise AssertionError("unreachable")


def ordinal(n: int) -> str:
    words = cardinal(n)
    head, sep, last = words.rpartition(" ")
    hyphen_head, hyphen, last = last.rpartition("-")
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + hyphen_head + hyphen + last


def year(n: int) -> str:
    """A year the way it is said: 1851 -> eighteen fifty-one, 1905 -> nineteen oh five."""
    if not 1000 <= n <= 2999 or 2000 <= n <= 2009 or n % 1000 == 0:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return cardinal(high) + " hundred"
    if low < 10:
        return cardinal(high) + " oh " + cardinal(low)
    return cardinal(high) + " " + cardinal(low)


def digits(text: str) -> str:
    """Each digit on its own: 007 -> zero zero seven."""
    return " ".join(_ONES[int(d)] for d in text if d.isdigit())


def decimal(text: str) -> str:
    """'3.14' -> 'three point one four'; '1,250.5' -> 'one thousand two hundred fifty point five'."""
    whole, _, frac = text.replace(",", "").partition(".")
    spoken = cardinal(int(whole)) if whole else "zero"
    return spoken + (" point " + digits(frac) if frac else "")


def fraction(numerator: int, denominator: int) -> str:
    if denominator == 2:
        return cardinal(numerator) + (" half" if numerator == 1 else " halves")
    if denominator == 4:
        return cardinal(numerator) + (" quarter" if numerator == 1 else " quarters")
    if 3 <= denominator <= 10:
        return cardinal(numerator) + " " + ordinal(denominator) + ("" if numerator == 1 else "s")
    return cardinal(numerator) + " over " + cardinal(denominator)


_ROMAN = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def roman_to_int(text: str) -> int | None:
    """Value of a well-formed Roman numeral, or None."""
    text = text.upper()
    if not text or any(ch not in _ROMAN for ch in text):
        return None
    total = 0
    for i, ch in enumerate(text):
        value = _ROMAN[ch]
        total += -value if i + 1 < len(text) and _ROMAN[text[i + 1]] > value else value
    return total if int_to_roman(total) == text else None


def int_to_roman(n: int) -> str:
    out = []
    for value, numeral in (
        (1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
        (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"),
    ):
        count, n = divmod(n, value)
        out.append(numeral * count)
    return "".join(out)


@lru_cache(maxsize=1)
def spoken_words() -> tuple[str, ...]:
    """What the readings of this module can say: cardinals, ordinals, years, fractions, digits and
    the words of the tables (their spoken sides). For the check that normalization invents nothing."""
    numbers = [*range(101), *(10**k for k in range(3, 16, 3))]
    said = [cardinal(n) for n in numbers] + [ordinal(n) for n in numbers]
    said += [fraction(k, d) for d in range(2, 11) for k in (1, 2)] + [year(1905), decimal("0.5")]
    said += MONTHS + [w for names in CURRENCIES.values() for w in names]
    said += [w for names in UNITS.values() for w in names] + list(ABBREVIATIONS.values())
    return tuple(said)
