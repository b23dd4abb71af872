"""Stable segment keys.

A key names one rendered segment: the same key means the same audio, so a run
stores each finished segment under its key and skips keys already stored.

The key covers everything that changes the audio of a segment: its model text,
the voice, the model and its revision, the decoding parameters,
the segment's language where the prompt names it (checkpoints that read language tags),
and the carryover inputs (the bound on the carried prefix and the model text of
the previous segment in the same chapter). Consequence: editing a lexicon entry
re-renders the segments whose model text it changes *and the segment right
after each of them*, because that one's carried prefix changed too.

Seeds come from the key itself (and the attempt), the only seed policy there is; the payload
still names it (`SEED_POLICY`), so that keys stay those of stores written when it was a setting.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

KEY_VERSION = 1
KEY_HEX_CHARS = 32  # 128 bits of sha256
SEED_POLICY = "from_key"  # a constant of the payload: seeds come from the key (it once was a setting)


def segment_key(
    text: str,
    *,
    voice_id: str,
    model_id: str,
    model_revision: str,
    decoding: dict,
    carryover_bound_frames: int,
    previous_text: str | None,
    language: str | None = None,
) -> str:
    """Hash of a canonical JSON of every input that decides a segment's audio (`language` only when
    the model is told it: a checkpoint that reads language tags)."""
    payload = {
        "v": KEY_VERSION,
        "text": text,
        "voice_id": voice_id,
        "model_id": model_id,
        "model_revision": model_revision,
        "decoding": _canonical(decoding),
        "seed_policy": SEED_POLICY,
        "carryover": {"bound_frames": int(carryover_bound_frames), "previous_text": previous_text},
    }
    if language is not None:
        payload["language"] = language
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:KEY_HEX_CHARS]


def _canonical(value: Any) -> Any:
    """Plain JSON values, with integral floats written as ints (1.0 and 1 give one key)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"decoding parameter {value!r} is not a finite number")
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise TypeError(f"decoding keys must be strings, got {k!r}")
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    raise TypeError(f"decoding value {value!r} of type {type(value).__name__} is not plain JSON")


@dataclass(frozen=True)
class KeyInputs:
    """Everything in a segment key except the segment's own text and its predecessor's."""

    voice_id: str
    model_id: str
    model_revision: str
    decoding: dict = field(default_factory=dict)
    carryover_bound_frames: int = 0
    language_tags: bool = False  # the prompt names each segment's language (v1.5), so the key does too

    def key(self, text: str, previous_text: str | None, language: str | None = None) -> str:
        return segment_key(
            text,
            voice_id=self.voice_id,
            model_id=self.model_id,
            model_revision=self.model_revision,
            decoding=self.decoding,
            carryover_bound_frames=self.carryover_bound_frames,
            previous_text=previous_text,
            language=language if self.language_tags else None,
        )
