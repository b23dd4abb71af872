"""Chinese words for numbers, and the word tables the Chinese normalizer reads."""
from __future__ import annotations

_DIGITS = "零一二三四五六七八九"
_SMALL_UNITS = ["", "十", "百", "千"]
_BIG_UNITS = ["", "万", "亿", "万亿"]

CURRENCIES = {"$": "美元", "¥": "元", "￥": "元", "€": "欧元", "£": "英镑", "₹": "卢比"}

UNITS = {
    "km": "公里", "m": "米", "cm": "厘米", "mm": "毫米", "kg": "公斤", "g": "克", "mg": "毫克",
    "ml": "毫升", "°C": "摄氏度", "℃": "摄氏度", "°F": "华氏度", "℉": "华氏度", "°": "度",
    "km/h": "公里每小时", "kph": "公里每小时", "mph": "英里每小时", "mi": "英里", "ft": "英尺",
    "lb": "磅", "lbs": "磅", "oz": "盎司", "ms": "毫秒", "min": "分钟", "Hz": "赫兹", "kHz": "千赫",
    "MHz": "兆赫", "GHz": "吉赫", "KB": "千字节", "MB": "兆字节", "GB": "吉字节", "TB": "太字节",
    "kW": "千瓦", "W": "瓦", "V": "伏",
}

# Measure words after which the number 2 is read 两 (两个, 两本), not 二.
MEASURE_WORDS = set("个位只本条件张次天年岁种把块名头匹辆架座间所家份双对部台层口句步")


def _four_digits(n: int) -> str:
    """0 < n < 10000, with 零 for inner gaps and no leading 零."""
    out = []
    zero_pending = False
    for position in range(3, -1, -1):
        digit = n // 10**position % 10
        if digit == 0:
            zero_pending = bool(out)
            continue
        if zero_pending:
            out.append("零")
            zero_pending = False
        out.append(_DIGITS[digit] + _SMALL_UNITS[position])
    return "".join(out)


def cardinal(n: int) -> str:
    """Chinese reading of an integer: 105 -> 一百零五, 12 -> 十二, 20000 -> 二万."""
    if n < 0:
        return "负" + cardinal(-n)
    if n == 0:
        return "零"
    if n >= 10**16:
        return digits(str(n))
    groups = []
    while n:
        n, group = divmod(n, 10000)
        groups.append(group)
    out = []
    zero_pending = False
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if group == 0:
            zero_pending = bool(out)
            continue
        if out and (zero_pending or group < 1000):
            out.append("零")
        zero_pending = False
        out.append(_four_digits(group) + _BIG_UNITS[index])
    text = "".join(out)
    # 10-19 at the start are said 十, 十一 ..., not 一十, 一十一.
    return text[1:] if text.startswith("一十") else text


def digits(text: str) -> str:
    """Digit by digit: 2024 -> 二零二四."""
    return "".join(_DIGITS[int(d)] for d in text if d.isdigit())


def decimal(text: str) -> str:
    whole, _, frac = text.replace(",", "").partition(".")
    spoken = cardinal(int(whole)) if whole else "零"
    return spoken + ("点" + digits(frac) if frac else "")


def spoken_words() -> tuple[str, ...]:
    """What the readings of this module can say (characters of numbers, and the tables' words).
    For the check that normalization invents nothing."""
    return (_DIGITS, *_SMALL_UNITS, *_BIG_UNITS, "负点", *CURRENCIES.values(), *UNITS.values())
