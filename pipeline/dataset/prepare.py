"""Input rows -> work items: text cleaned and normalized the pipeline's way, long texts cut at sentences (parts
of one id), a voice, a key (which gives the seed), or a reject with its reason."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.dataset.rows import InputRow
from pipeline.dataset.voices import DatasetVoice, assign_voice
from pipeline.reading.clean import clean_paragraph
from pipeline.reading.script import detect_language
from pipeline.text.inline import split_controls
from pipeline.text.keys import KeyInputs
from pipeline.text.normalize import speak_pieces
from pipeline.text.segment import (SpeakingRates, UnsplittableError, estimate_seconds, is_speakable,
                                   seconds_to_frames, segment_paragraph)

KNOWN_COLUMNS = ("id", "text", "voice", "language", "duration_s")
DATASET_KEY_VERSION = 1


@dataclass(frozen=True)
class PrepareOptions:
    target_seconds: float = 18.0  # a longer text is cut at sentences into parts of about this length
    max_seconds: float = 30.0  # no part is longer (a longer sentence is cut at clauses, then words)
    max_row_seconds: float = 300.0  # a longer row is rejected
    language: str = "auto"  # auto: the row's `language`, else detected; or one code for every row
    default_language: str = "en"
    assignment: str = "round_robin"  # or "random" (seeded by `assignment_seed` and the row id)
    assignment_seed: int = 0
    rates: SpeakingRates = field(default_factory=SpeakingRates)
    loudness_lufs: float | None = None  # part of the key: it changes the audio bytes


@dataclass(frozen=True)
class WorkItem:
    id: str  # unique in the dataset: the row id, or `<row id>-<part>` for the parts of a long text
    source_id: str
    part: int
    parts: int
    text: str
    normalized_text: str
    language: str
    voice: str
    voice_id: str
    key: str
    est_frames: int
    tokens: int | None  # requested duration in frames (from duration_s), or None
    place: str
    extra: str  # the row's other columns, as a JSON object


@dataclass(frozen=True)
class Reject:
    place: str
    id: str | None
    reason: str  # a short code: empty_text, unknown_voice, too_long, duplicate_id, bad_row, ...
    detail: str


def dataset_key(inputs: KeyInputs, model_text: str, tokens: int | None, loudness_lufs: float | None) -> str:
    """The segment key (text, voice, model, revision, decoding, seed policy) and what else shapes the
    bytes of a dataset row: its requested duration and the loudness target."""
    payload = json.dumps({"v": DATASET_KEY_VERSION, "segment": inputs.key(model_text, None), "tokens": tokens,
                          "loudness_lufs": loudness_lufs}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class Preparer:
    """Turns the input's rows, one at a time, into work items and rejects."""

    def __init__(self, voices: dict[str, DatasetVoice], inputs: KeyInputs, options: PrepareOptions) -> None:
        self.voices = voices
        self.names = sorted(voices)
        self.inputs = inputs
        self.options = options
        self._ids: set[bytes] = set()  # 8-byte digests of the ids seen (duplicates are rejected)
        self._position = 0  # rows accepted so far (round-robin voice assignment)

    def prepare(self, row: InputRow) -> tuple[list[WorkItem], Reject | None]:
        if row.fields is None:
            return [], Reject(row.place, None, "bad_row", row.problem)
        fields = row.fields
        raw = fields.get("text")
        raw = "" if raw is None else str(raw).strip()
        text = clean_paragraph(raw)  # cleaned as a book's paragraphs are (pipeline.reading.clean)
        row_id = str(fields["id"]).strip() if fields.get("id") not in (None, "") else None
        if not text or not is_speakable(text):
            return [], Reject(row.place, row_id, "empty_text", "the row has no text to say")
        voice_name = fields.get("voice")
        if voice_name not in (None, ""):
            voice_name = str(voice_name)
            if voice_name not in self.voices:
                return [], Reject(row.place, row_id, "unknown_voice",
                                  f"voice {voice_name!r} is not one of: {', '.join(self.names)}")
        if row_id is None:
            row_id = hashlib.sha256(f"{raw}\0{voice_name or ''}".encode()).hexdigest()[:16]
        digest = hashlib.sha256(row_id.encode()).digest()[:8]
        if digest in self._ids:
            return [], Reject(row.place, row_id, "duplicate_id", "an earlier row has the same id")
        tokens_total = None
        if fields.get("duration_s") not in (None, ""):
            try:
                seconds = float(fields["duration_s"])
            except (TypeError, ValueError):
                seconds = math.nan
            if not (math.isfinite(seconds) and 0 < seconds <= self.options.max_row_seconds):
                return [], Reject(row.place, row_id, "bad_duration",
                                  f"duration_s {fields['duration_s']!r} is not a number of seconds in "
                                  f"(0, {self.options.max_row_seconds:g}]")
            tokens_total = seconds_to_frames(seconds)
        language = self._language(text, fields.get("language"))
        try:
            cuts = segment_paragraph(text, lambda unit: self._spoken(unit, language)[1], self.options.target_seconds,
                                     self.options.max_seconds)
        except UnsplittableError as error:
            return [], Reject(row.place, row_id, "too_long",
                              f"one unbroken word of {error.end - error.start} characters takes {error.seconds:.0f} s")
        pieces = []
        for cut in cuts:
            piece = text[cut.start:cut.speech_end].strip()
            spoken, seconds = self._spoken(piece, language)
            if is_speakable(spoken):
                pieces.append((piece, spoken, seconds))
        total_seconds = sum(p[2] for p in pieces)
        if not pieces:
            return [], Reject(row.place, row_id, "empty_text", "nothing in the text is speakable")
        if total_seconds > self.options.max_row_seconds:
            return [], Reject(row.place, row_id, "too_long",
                              f"about {total_seconds:.0f} s of speech, over the {self.options.max_row_seconds:g} s "
                              "maximum (synthesize.max_row_seconds)")
        self._ids.add(digest)
        if voice_name in (None, ""):
            voice_name = assign_voice(row_id, self._position, self.names, self.options.assignment,
                                      self.options.assignment_seed)
        self._position += 1
        voice = self.voices[voice_name]
        inputs = KeyInputs(voice.spec.voice_id, self.inputs.model_id, self.inputs.model_revision,
                           self.inputs.decoding, 0)
        extra = json.dumps({k: _plain(v) for k, v in fields.items() if k not in KNOWN_COLUMNS},
                           sort_keys=True, ensure_ascii=False)
        items = []
        for part, (piece, spoken, seconds) in enumerate(pieces):
            tokens = None
            if tokens_total is not None:  # the requested duration, shared by the parts' estimates
                tokens = max(1, round(tokens_total * seconds / total_seconds)) if total_seconds else tokens_total
            items.append(WorkItem(
                id=row_id if len(pieces) == 1 else f"{row_id}-{part:03d}", source_id=row_id, part=part,
                parts=len(pieces), text=piece, normalized_text=spoken, language=language, voice=voice_name,
                voice_id=voice.spec.voice_id, key=dataset_key(inputs, spoken, tokens, self.options.loudness_lufs),
                est_frames=tokens or seconds_to_frames(seconds), tokens=tokens, place=row.place, extra=extra,
            ))
        return items, None

    def _language(self, text: str, given: Any) -> str:
        if self.options.language != "auto":
            return self.options.language
        if given not in (None, ""):
            return str(given)
        plain = "".join(piece for piece, kind in split_controls(text) if kind is None)
        return detect_language(plain, default=self.options.default_language)

    def _spoken(self, unit: str, language: str) -> tuple[str, float]:
        spoken = speak_pieces(split_controls(unit.strip()), language)
        return spoken, estimate_seconds(spoken, self.options.rates, language)


def prepare_rows(rows: Iterator[InputRow], preparer: Preparer) -> Iterator[WorkItem | Reject]:
    for row in rows:
        items, reject = preparer.prepare(row)
        if reject is not None:
            yield reject
        yield from items


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)

