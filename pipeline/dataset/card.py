"""The dataset card (README.md in the output): what is in it, how much of each voice and language,
flags and rejects, and the command that made it, with the YAML header the Hugging Face hub reads."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from pipeline.dataset.manifest import ManifestInfo
from pipeline.dataset.shards import DATA_DIR, SPLIT


@dataclass(frozen=True)
class DatasetTotals:
    rows: int
    seconds: float
    by_voice: dict[str, tuple[int, float]]  # rows, seconds
    by_language: dict[str, tuple[int, float]]
    flags: dict[str, int]  # flag -> rows carrying it
    flagged_rows: int
    retried_rows: int


def totals(tables: list[pa.Table]) -> DatasetTotals:
    by_voice: dict[str, list] = {}
    by_language: dict[str, list] = {}
    flags: Counter = Counter()
    rows, seconds, flagged, retried = 0, 0.0, 0, 0
    for table in tables:
        for voice, language, duration, row_flags, attempts in zip(*(table.column(c).to_pylist() for c in
                                                                    ("voice", "language", "duration_s", "flags",
                                                                     "attempts"))):
            rows += 1
            seconds += duration
            for group, name in ((by_voice, voice), (by_language, language)):
                entry = group.setdefault(name, [0, 0.0])
                entry[0] += 1
                entry[1] += duration
            flags.update(row_flags)
            flagged += bool(row_flags)
            retried += attempts > 1
    return DatasetTotals(rows, seconds, {k: tuple(v) for k, v in sorted(by_voice.items())},
                         {k: tuple(v) for k, v in sorted(by_language.items())}, dict(sorted(flags.items())),
                         flagged, retried)


def write_card(output: Path, t: DatasetTotals, info: ManifestInfo, command: str, model: str, revision: str,
               tiny: bool, decoding: str) -> Path:
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        f"  - split: {SPLIT}",
        f"    path: {DATA_DIR}/{SPLIT}-*.parquet",
        "task_categories:",
        "- text-to-speech",
        "- automatic-speech-recognition",
        "---",
        "",
        "# Synthetic speech dataset",
        "",
        f"{t.rows} utterances, {t.seconds / 3600:.3f} hours, in {info.shards} Parquet shard(s) under `{DATA_DIR}/` "
        "(Hugging Face `datasets` Audio layout: FLAC bytes).",
        "",
        f"- model: `{model}` (revision `{revision}`)" + (" — **tiny random weights: the audio is noise**" if tiny else ""),
        f"- decoding: `{decoding}`",
        f"- rejected input rows: {info.rejects}" + (f" ({_counts(info.reject_reasons)}; see `rejects.jsonl`)"
                                                   if info.rejects else ""),
        f"- flagged utterances (failed their checks after every attempt, kept): {t.flagged_rows}"
        + (f" ({_counts(t.flags)})" if t.flags else ""),
        f"- utterances that needed more than one attempt: {t.retried_rows}",
        "",
        "| voice | utterances | hours |",
        "|---|---|---|",
        *[f"| {name} | {n} | {s / 3600:.4f} |" for name, (n, s) in t.by_voice.items()],
        "",
        "| language | utterances | hours |",
        "|---|---|---|",
        *[f"| {name} | {n} | {s / 3600:.4f} |" for name, (n, s) in t.by_language.items()],
        "",
        "Load it:",
        "",
        "```python",
        "import datasets",
        f'ds = datasets.load_dataset("parquet", data_dir="{DATA_DIR}", split="{SPLIT}")',
        "```",
        "",
        "Made by:",
        "",
        "```bash",
        command,
        "```",
        "",
    ]
    path = output / "README.md"
    partial = output / ".README.md.partial"
    partial.write_text("\n".join(lines), encoding="utf-8")
    os.replace(partial, path)
    return path


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())
