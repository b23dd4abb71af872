"""The voices of a dataset: a folder of references (with optional transcripts) or a manifest, and
which voice speaks which row."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError
from pipeline.narration.voice import VoiceSpec, check_voice

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus")
TRANSCRIPT_FILES = ("transcripts.tsv", "transcripts.csv")
NO_VOICE = "none"  # voices=null: every row is generated without a reference
ASSIGNMENTS = ("round_robin", "random")


@dataclass(frozen=True)
class DatasetVoice:
    name: str  # what rows and the output call it
    spec: VoiceSpec  # path, transcript, id (hash of the file and transcript)


def load_voices(path: str | None) -> dict[str, DatasetVoice]:
    """name -> voice, checked (readable audio of at least a second) before any model loads.

    A folder: every audio file is a voice named by its stem; its transcript is `<stem>.txt`
    beside it, or a line of `transcripts.tsv` (`file<TAB>transcript`). A file: a manifest,
    JSONL or CSV/TSV with `name`, `path` (relative to the manifest) and optional `text`.
    """
    if path is None:
        return {NO_VOICE: DatasetVoice(NO_VOICE, VoiceSpec(None, None, NO_VOICE))}
    source = Path(str(path)).expanduser()
    if source.is_dir():
        entries = _folder_entries(source)
    elif source.is_file():
        entries = _manifest_entries(source)
    else:
        raise InputError(str(source), "", "the voices folder does not exist",
                         "pass voices= a folder of reference recordings (name.wav + name.txt) or a manifest")
    if not entries:
        raise InputError(str(source), "", "no voice found",
                         f"add reference recordings ({', '.join(AUDIO_SUFFIXES)}) or manifest lines")
    voices = {}
    for name, (audio, text, place) in entries.items():
        try:
            spec = check_voice(str(audio), text)
        except InputError as error:
            raise InputError(error.path, place or error.place, error.problem, error.hint) from None
        voices[name] = DatasetVoice(name, spec)
    return voices


def _folder_entries(folder: Path) -> dict[str, tuple[Path, str | None, str]]:
    transcripts: dict[str, str] = {}
    for table in TRANSCRIPT_FILES:
        if (folder / table).is_file():
            delimiter = "\t" if table.endswith(".tsv") else ","
            with (folder / table).open(encoding="utf-8-sig", newline="") as handle:
                for row in csv.reader(handle, delimiter=delimiter):
                    if len(row) >= 2 and row[0] != "file":
                        transcripts[row[0].strip()] = row[1].strip()
    entries = {}
    for audio in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES):
        if audio.stem in entries:
            raise InputError(str(audio), "", f"two recordings are named {audio.stem!r}",
                             "rename one: a voice is named by its file name without the suffix")
        beside = audio.with_suffix(".txt")
        text = beside.read_text(encoding="utf-8-sig").strip() if beside.is_file() else transcripts.get(audio.name)
        entries[audio.stem] = (audio, text or None, "")
    return entries


def _manifest_entries(manifest: Path) -> dict[str, tuple[Path, str | None, str]]:
    rows: list[tuple[str, dict]] = []
    try:
        if manifest.suffix.lower() in (".jsonl", ".ndjson"):
            with manifest.open(encoding="utf-8-sig") as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        rows.append((f"line {number}", json.loads(line)))
        elif manifest.suffix.lower() in (".csv", ".tsv"):
            with manifest.open(encoding="utf-8-sig", newline="") as handle:
                reader = csv.DictReader(handle, delimiter="\t" if manifest.suffix.lower() == ".tsv" else ",")
                rows = [(f"line {reader.line_num}", row) for row in reader]
        else:
            raise InputError(str(manifest), "", f"unsupported voices manifest type {manifest.suffix!r}",
                             "use a folder of recordings, or a .jsonl/.csv/.tsv manifest with name, path, text")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(str(manifest), "", f"cannot be parsed ({error})", "fix the manifest line") from error
    entries = {}
    for place, row in rows:
        if not isinstance(row, dict) or not row.get("path"):
            raise InputError(str(manifest), place, "no 'path' of a recording", "give every line name, path and text")
        audio = (manifest.parent / str(row["path"])).expanduser()
        name = str(row.get("name") or audio.stem)
        if name in entries:
            raise InputError(str(manifest), place, f"the voice name {name!r} is used twice", "give each voice its own name")
        entries[name] = (audio, (row.get("text") or None), place)
    return entries


def assign_voice(row_id: str, position: int, names: list[str], policy: str, seed: int) -> str:
    """The voice of a row without one: by its position (round_robin) or a hash of its id and the seed
    (random), so the same input gives the same voices whatever the schedule."""
    if policy == "round_robin":
        return names[position % len(names)]
    digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return names[int.from_bytes(digest[:8], "big") % len(names)]
