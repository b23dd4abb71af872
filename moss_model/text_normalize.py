"""Robustness clean-up of text before it is templated into a prompt.

Not a reading normalizer (numbers, dates and units are the pipeline's job): this only removes
what trips the model up — invisible characters, runs of spaces, spaces inside Chinese or
Japanese text, line breaks, runs of repeated punctuation, arrows — and keeps URLs, inline
Pinyin, IPA between slashes and bracketed controls such as `[pause 1.5s]` as they are.
"""

from __future__ import annotations

import re

_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_PROTECTED = re.compile(r"(?:https?://|www\.)\S+|\[[^\[\]\n]*\]|\{[^{}\n]*\}|/[^/\s][^/\n]{0,80}?/")
_SPACES = re.compile(r"[ \t\u00a0\u3000\u2000-\u200a\u202f\u205f]+")
_CJK_INNER_SPACE = re.compile(rf"(?<=[{_CJK}，。！？；：、“”‘’（）《》])\s+(?=[{_CJK}，。！？；：、“”‘’（）《》])")
_CJK_LATIN = re.compile(rf"(?<=[{_CJK}])(?=[A-Za-z])|(?<=[A-Za-z])(?=[{_CJK}])")
_ARROWS = re.compile(r"\s*(?:->|=>|→|⇒|⟶)\s*")
_ELLIPSIS = re.compile(r"(?:\.{4,}|…{2,}|。{2,})")
_REPEATED = re.compile(r"([!?！？])\1+")
_PLACEHOLDER = "\ue000{}\ue001"
_PLACEHOLDER_BACK = re.compile("\ue000(\\d+)\ue001")


def normalize_text(text: str) -> str:
    """Clean text for the model; idempotent."""
    text = _ZERO_WIDTH.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    protected: list[str] = []

    def protect(match: re.Match[str]) -> str:
        protected.append(match.group(0))
        return _PLACEHOLDER.format(len(protected) - 1)

    text = _PROTECTED.sub(protect, text)
    text = _join_lines(text)
    text = _ARROWS.sub(lambda m: "，" if _near_cjk(m) else ", ", text)
    text = _ELLIPSIS.sub(lambda m: "…" if "…" in m.group(0) or "。" in m.group(0) else "...", text)
    text = _REPEATED.sub(r"\1", text)
    text = _SPACES.sub(" ", text)
    text = _CJK_INNER_SPACE.sub("", text)
    text = _CJK_LATIN.sub(" ", text)
    text = _PLACEHOLDER_BACK.sub(lambda m: protected[int(m.group(1))], text)
    return text.strip()


def _join_lines(text: str) -> str:
    """Line breaks become sentence boundaries unless the line already ends one."""
    lines = [line.strip() for line in text.split("\n")]
    pieces: list[str] = []
    for line in lines:
        if not line:
            continue
        if pieces and not re.search(r"[.!?。！？；;:：,，…\"'”’)）\]]$", pieces[-1]):
            pieces[-1] += "。" if re.search(rf"[{_CJK}]$", pieces[-1]) else "."
        pieces.append(line)
    return " ".join(pieces)


def _near_cjk(match: re.Match[str]) -> bool:
    before = match.string[max(0, match.start() - 1) : match.start()]
    after = match.string[match.end() : match.end() + 1]
    return bool(re.match(rf"[{_CJK}]", before + after))
