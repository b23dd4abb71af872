"""Which checkpoint a run uses: `model=auto|moss_tts|moss_tts_v1_5|tiny|<folder>`."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError

PRESETS = {
    "moss_tts": "OpenMOSS-Team/MOSS-TTS",
    "moss_tts_v1_5": "OpenMOSS-Team/MOSS-TTS-v1.5",
}
CHOICES = ("auto", *PRESETS, "tiny", "<a local checkpoint folder>")
TINY_SEED = 0


@dataclass(frozen=True)
class ModelChoice:
    name: str  # what the user asked for, after `auto` is decided
    checkpoint: str  # hub id or local folder of the delay model
    codec: str | None  # hub id or folder of the codec; None = the one its processor config names
    tiny: bool  # random weights: the audio is noise and durations ignore the text


_V1_5 = re.compile(r"v1[._-]?5", re.IGNORECASE)


def reads_language_tags(model: str, checkpoint: str = "") -> bool:
    """Whether a checkpoint honours the prompt's language field: MOSS-TTS v1.5 (`model=moss_tts_v1_5`,
    or a hub id or folder named for it); v1.0 was trained with the field empty."""
    return bool(_V1_5.search(model) or (checkpoint and _V1_5.search(Path(checkpoint).name)))


def language_tags_setting(setting: str | bool, model: str, checkpoint: str = "") -> bool:
    """`narration.language_tags`: true, false, or auto (on for checkpoints that read them)."""
    return reads_language_tags(model, checkpoint) if str(setting) == "auto" else str(setting).lower() == "true"


def cache_dir() -> Path:
    return Path(os.environ.get("MOSS_NARRATOR_CACHE", Path.home() / ".cache" / "moss_narrator"))


def resolve_on_node(name: str, resolve: Callable[[str], Path] | None = None) -> Path:
    """The local folder of a checkpoint (hub id or folder), resolved once per machine: the first
    actor of a node downloads it (into the Hugging Face cache, `HF_HUB_CACHE`, or a shared folder it
    names) while the node's other actors wait on a lock, then read what it recorded."""
    from filelock import FileLock

    if resolve is None:
        from moss_model.checkpoint import resolve_checkpoint as resolve
    folder = cache_dir() / "resolved"
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / (hashlib.sha256(name.encode()).hexdigest()[:16] + ".txt")
    with FileLock(str(record) + ".lock"):
        if record.is_file() and Path(record.read_text(encoding="utf-8")).is_dir():
            return Path(record.read_text(encoding="utf-8"))
        resolved = Path(resolve(name))
        record.write_text(str(resolved), encoding="utf-8")
        return resolved


def ensure_tiny_checkpoints() -> Path:
    """The tiny random checkpoints (built once per machine; deterministic, so every node agrees)."""
    from moss_model.tiny import write_tiny_checkpoints

    target = cache_dir() / f"tiny-seed{TINY_SEED}"
    if (target / "moss-tts-tiny" / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix="tiny-", dir=target.parent))
    write_tiny_checkpoints(building, seed=TINY_SEED)
    try:
        building.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(building, ignore_errors=True)
    return target


def tiny_choice(name: str = "tiny") -> ModelChoice:
    root = ensure_tiny_checkpoints()
    return ModelChoice(name, str(root / "moss-tts-tiny"), str(root / "codec-tiny"), tiny=True)


def resolve_model(name: str, cuda_available: bool) -> ModelChoice:
    """Decide the checkpoint before anything loads; unknown names list the valid choices."""
    name = str(name)
    if name == "tiny":
        return tiny_choice()
    if name in PRESETS:
        return ModelChoice(name, PRESETS[name], None, tiny=False)
    if name == "auto":
        return _auto(cuda_available)
    if Path(name).expanduser().is_dir():
        folder = Path(name).expanduser().resolve()
        if not (folder / "config.json").is_file():
            raise InputError(str(folder), "", "is not a checkpoint folder (no config.json)",
                             f"pass a folder with config.json and safetensors, or one of: {', '.join(CHOICES)}")
        return ModelChoice(str(folder), str(folder), None, tiny=False)
    raise InputError("model=", name, "is not a known model", f"valid choices: {', '.join(CHOICES)}")


def _auto(cuda_available: bool) -> ModelChoice:
    if not cuda_available:
        warnings.warn("model=auto: no CUDA GPU here, so the tiny random checkpoint is used instead of "
                      "MOSS-TTS; the audio will be noise. Pick model=moss_tts on a GPU machine.", stacklevel=2)
        return tiny_choice("auto->tiny")
    from moss_model.checkpoint import CheckpointError, resolve_checkpoint

    try:
        resolve_checkpoint(PRESETS["moss_tts"])
    except CheckpointError as error:
        warnings.warn(f"model=auto: the MOSS-TTS weights cannot be had ({error}); the tiny random checkpoint "
                      "is used instead and the audio will be noise.", stacklevel=2)
        return tiny_choice("auto->tiny")
    return ModelChoice("auto->moss_tts", PRESETS["moss_tts"], None, tiny=False)
