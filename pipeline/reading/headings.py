"""Chapter headings in plain text: "Chapter 12", "CHAPTER XII", "Kapitel 3", "Chapitre III",
"Capítulo 2", "第十二章", "第十二回", "제1장", "# Title"
"""
from __future__ import annotations

import re

_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    "sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred"
)
_EN_NUMBER = rf"(?i:\d+|[IVXLCDM]+|(?:{_NUMBER_WORDS})(?:[- ](?:{_NUMBER_WORDS}))*)"
BUILTIN_PATTERNS = (
    # Chapter 12 / CHAPTER XII. Loomings / Chapter Twenty-One: The Storm / Chapter 3 The Boy
    rf"(?i:chapter|chap\.)\s+{_EN_NUMBER}\b(?:\s*[.:—–-]\s*.*|\s+[A-Z\"“'‘].*)?",
    r"(?i:prologue|epilogue|preface|foreword|introduction|afterword)(?:\s*[.:—–-]\s*.*)?",
    # German, French, Spanish: Kapitel 3 / Chapitre III. La route / Capítulo 12: El fin
    rf"(?i:kapitel|chapitre|cap[ií]tulo)\s+(?:\d+|[IVXLCDM]+)\b(?:\s*[.:—–-]\s*.*|\s+[A-ZÀ-Ý\"“'‘«¿¡].*)?",
    # Korean: 제1장 / 제 3 화 시작
    r"제\s*[0-9]+\s*[장화부편](?:[\s:：.—-]+.*[^.!?。！？])?",
    # 第十二章 / 第十二回 风雪 / 第3章：开始 (but not the sentence "第一回合他就输了。")
    r"第[0-9零〇一二三四五六七八九十百千万两]+[章回节卷集部篇](?:[\s:：、.．—-]+.*[^。！？!?])?",
    r"(?:序章|序言|楔子|引子|尾声|后记|番外)(?:[\s:：、.．—-]+.*[^。！？!?])?",
    # Markdown heading
    r"#{1,6}\s+(?P<title>.+?)\s*#*",
)
MAX_HEADING_CHARS = 100


class HeadingMatcher:
    """Decides whether a line of plain text is a chapter heading, and its title.

    A pattern must match the whole (stripped) line; its group named "title", if
    any, is the title, else the whole line is.
    """

    def __init__(self, pattern: str | None = None) -> None:
        patterns = (pattern,) if pattern else BUILTIN_PATTERNS
        try:
            self._patterns = [re.compile(p) for p in patterns]
        except re.error as e:
            raise ValueError(f"plan.chapter_pattern {pattern!r} is not a valid regular expression: {e}") from None

    def title(self, line: str) -> str | None:
        """The chapter title if `line` is a heading, else None."""
        line = line.strip()
        if not line or len(line) > MAX_HEADING_CHARS:
            return None
        for pattern in self._patterns:
            m = pattern.fullmatch(line)
            if m is not None:
                return (m.groupdict().get("title") or line).strip()
        return None
