"""The processor's text clean-up equals upstream's `normalize_tts_text` on the golden table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from moss_model.text_normalize import normalize_text

TABLE = Path(__file__).parent / "data" / "normalize_golden.jsonl"


def _table() -> tuple[dict, list[dict]]:
    lines = TABLE.read_text(encoding="utf-8").split("\n")
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:] if line.strip()]


HEADER, CASES = _table()


def test_table_is_recorded_from_upstream() -> None:
    assert HEADER["recorded_from"].startswith("OpenMOSS/MOSS-TTS@")
    assert len(HEADER["recorded_from"].split("@")[1]) == 40  # a full commit id
    assert HEADER["cases"] == len(CASES) >= 150
    assert len({case["input"] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_equals_upstream(case: dict) -> None:
    assert normalize_text(case["input"]) == case["output"]


def test_whole_table_at_once() -> None:
    """One assertion listing every line that differs, for a readable failure."""
    wrong = [(c["input"], c["output"], normalize_text(c["input"])) for c in CASES
             if normalize_text(c["input"]) != c["output"]]
    assert not wrong, "\n".join(f"{i!r}: upstream {o!r}, ours {a!r}" for i, o, a in wrong)


@pytest.mark.parametrize("text, expected", [
    ("first line\nsecond line", "first line。second line"),  # a line break is "。", not ". "
    ("No way!!!", "No way！"),
    ("a -> b", "a，b"),
    ("嗯……好吧。", "嗯。好吧。"),
    ("【注】本书为节选。", "注。本书为节选。"),
    ("# A heading", "A heading"),
    ("他说“你好” 然后走了", "他说“你好” 然后走了"),  # the space after a closing quote stays
])
def test_issue_examples(text: str, expected: str) -> None:
    assert normalize_text(text) == expected
