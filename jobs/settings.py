"""The configuration's schema: every key's type, range or choices and the rules across keys,
checked whole before anything is written, Ray starts or a model loads.

`check_config(cfg)` looks at every known key at once and raises one `ConfigError` listing every
violation (the key, the value given, what is allowed). Once it passes, the builders in
jobs/config.py turn the sections into typed dataclasses, and OmegaConf goes no further. Keys this schema does not know (another job's
section) are left to that job. Also here: the files the config names, the transcript, and
output-folder safety (never /, a system folder or home; a non-empty folder only if it is this
book's output, or with overwrite=true).
"""

from __future__ import annotations

import codecs
import math
import re
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from pipeline.errors import InputError

LANGUAGES = ("auto", "en", "zh", "ja", "ko", "de", "fr", "es")
LOUDNESS_PRESETS = ("audiobook", "podcast", "broadcast")
LOSSY_FORMATS = ("mp3", "opus", "aac")
SUBTITLE_MODES = ("sentences", "segments")
MANUSCRIPT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".epub")
MODEL_NAMES = ("auto", "moss_tts", "moss_tts_v1_5", "tiny")
ASR_KINDS = ("pocketsphinx", "whisper")
_BITRATE = re.compile(r"^(\d+)([kK])?$")

Check = Callable[[Any], "str | None"]  # a value -> None when allowed, else what is allowed


class ConfigError(InputError):
    """One or more configuration values are not allowed; each line names the key, the value and the fix."""

    def __init__(self, problems: list[tuple[str, Any, str]]) -> None:
        self.problems = problems
        lines = [f"{key}={_show(value)}: {allowed}" for key, value, allowed in problems]
        ValueError.__init__(self, "invalid configuration (nothing was written):\n  " + "\n  ".join(lines)
                            + "\nWhat to do: change the values above as each line says, and run the same command again")
        self.path, self.place = "config", ""
        self.problem, self.hint = "; ".join(lines), "fix the values above"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (ListConfig, DictConfig)):
        value = OmegaConf.to_container(value)
    text = str(value)
    return repr(text) if text == "" or text != text.strip() else text


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False,
           integer: bool = False, nullable: bool = False, auto: bool = False) -> Check:
    """A number (an integer if `integer`) in [lo, hi] (open ends if asked); `null`/`auto` if allowed."""
    low = "" if lo is None else f"{'>' if lo_open else '>='} {lo:g}"
    high = "" if hi is None else f"{'<' if hi_open else '<='} {hi:g}"
    what = "a whole number" if integer else "a number"
    allowed = " and ".join(p for p in (low, high) if p)
    extras = [x for x, on in (("auto", auto), ("null", nullable)) if on]
    message = f"must be {what}{' ' + allowed if allowed else ''}" + (f", or {' or '.join(extras)}" if extras else "")

    def check(value: Any) -> str | None:
        if value is None:
            return None if nullable else message
        if auto and value == "auto":
            return None
        if not _is_number(value) or integer and float(value) != int(value):
            return message
        if lo is not None and (value <= lo if lo_open else value < lo):
            return message
        if hi is not None and (value >= hi if hi_open else value > hi):
            return message
        return None

    return check


def choice(*options: str, nullable: bool = False) -> Check:
    listed = ", ".join(options) + (", or null" if nullable else "")

    def check(value: Any) -> str | None:
        if value is None and nullable or isinstance(value, str) and value in options:
            return None
        return f"valid choices: {listed}"

    return check


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def text(nullable: bool = False, nonempty: bool = True) -> Check:
    def check(value: Any) -> str | None:
        if value is None:
            return None if nullable else "must be set (a string)"
        if isinstance(value, (DictConfig, ListConfig)):
            return "must be a single value, not a list or mapping" + (", or null" if nullable else "")
        if nonempty and not str(value).strip():
            return "must not be empty" + (" (use null to leave it unset)" if nullable else "")
        return None

    return check


def bitrate(value: Any) -> str | None:
    match = _BITRATE.match(str(value)) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    kbps = None if match is None else int(match[1]) if match[2] else int(match[1]) / 1000
    if kbps is None or not 6 <= kbps <= 512:
        return "must be a bitrate like 64k (6k to 512k) or 64000"
    return None


def regex(value: Any) -> str | None:
    if value is None:
        return None
    try:
        re.compile(str(value))
    except re.error as error:
        return f"is not a valid regular expression ({error}); give a Python regex or null"
    return None


def encoding(value: Any) -> str | None:
    if value is None:
        return None
    try:
        codecs.lookup(str(value))
    except LookupError:
        return "is not a known text encoding; use e.g. utf-8, utf-16, gb18030, or null to detect it"
    return None


def string_list(value: Any) -> str | None:
    if isinstance(value, ListConfig) and all(isinstance(v, str) for v in value):
        return None
    return "must be a list of page kinds like [cover,toc] ([] keeps every page)"


# key -> check. Every key here is checked whenever it is present in the composed config.
RULES: dict[str, Check] = {
    "input": text(),
    "output": text(),
    "store": text(nullable=True),
    "voice": text(nullable=True),
    "voice_text": text(nullable=True, nonempty=False),
    "voice_text_file": text(nullable=True),
    "model": text(),
    "lexicon": text(nullable=True),
    "language": choice(*LANGUAGES),
    "overwrite": boolean,
    "plan.target_seconds": number(0, 600, lo_open=True),
    "plan.max_seconds": number(0, 600, lo_open=True),
    "plan.max_run_seconds": number(0, lo_open=True),
    **{f"plan.speaking_rate.{code}": number(0, 100, lo_open=True) for code in LANGUAGES if code != "auto"},
    "plan.skip_front_matter": string_list,
    "plan.chapter_pattern": regex,
    "plan.polyphones": text(nullable=True, nonempty=False),
    "plan.encoding": encoding,
    "plan.keep_page_numbers": boolean,
    "plan.keep_code": boolean,
    "plan.max_archive_mb": number(1, integer=False),
    "plan.max_compression_ratio": number(1),
    "narration.carryover_bound_frames": number(0, integer=True),
    "narration.max_attempts": number(1, 20, integer=True),
    "narration.check_durations": boolean,
    "narration.min_duration_ratio": number(0, lo_open=True),
    "narration.max_duration_ratio": number(0, lo_open=True),
    "narration.silence_dbfs": number(-120, 0, hi_open=True),
    "narration.max_frames_per_segment": number(13, 30000, integer=True),
    "narration.capacity": number(1, 4096, integer=True, auto=True),
    "narration.language_tags": lambda v: None if isinstance(v, bool) or v == "auto" else "valid choices: auto, true, false",
    "quality.enabled": boolean,
    "quality.act": lambda v: None if isinstance(v, bool) or v == "auto" else "valid choices: auto, true, false",
    "quality.similarity": boolean,
    "quality.wer": boolean,
    "quality.asr": choice(*ASR_KINDS),
    "quality.asr_path": text(nullable=True),
    "quality.wer_sample": number(0, 1),
    "quality.min_similarity": number(-1, 1),
    "quality.min_similarity_to_run": number(-1, 1),
    "quality.similarity_mads": number(0),
    "quality.min_similarity_margin": number(0, 2),
    "quality.min_history": number(1, 100000, integer=True),
    "quality.max_wer": number(0),
    "quality.min_wer_words": number(1, 10000, integer=True),
    "quality.max_regenerations": number(0, 20, integer=True),
    "quality.report": boolean,
    "finish.pauses.clause": number(0, 30),
    "finish.pauses.sentence": number(0, 30),
    "finish.pauses.paragraph": number(0, 30),
    "finish.pauses.chapter": number(0, 60),
    "finish.pauses.lead_in": number(0, 30),
    "finish.loudness_preset": choice(*LOUDNESS_PRESETS),
    "finish.target_lufs": number(-70, 0, lo_open=True, hi_open=True, nullable=True),
    "finish.true_peak_db": number(-20, 0),
    "finish.lossy_format": choice(*LOSSY_FORMATS, nullable=True),
    "finish.lossy_bitrate": bitrate,
    "finish.subtitles": choice(*SUBTITLE_MODES, nullable=True),
    "finish.write_m4b": boolean,
    "cluster.address": text(nullable=True),
    "cluster.num_actors": number(1, 10000, integer=True),
    "cluster.gpus_per_actor": number(0, 64, auto=True),
    "cluster.cpus_per_actor": number(0, 1024, lo_open=True),
    "cluster.finish_cpus": number(0, 1024, lo_open=True),
    "cluster.num_cpus": number(1, 100000, integer=True, nullable=True),
    "cluster.dashboard": boolean,
    "cluster.placement_timeout_s": number(1, 86400),
    "decoding.audio_temperature": number(0, 10),
    "decoding.audio_top_p": number(0, 1, lo_open=True),
    "decoding.audio_top_k": number(0, 100000, integer=True),
    "decoding.audio_repetition_penalty": number(0, 10, lo_open=True),
    "decoding.text_temperature": number(0, 10),
    "decoding.text_top_p": number(0, 1, lo_open=True),
    "decoding.text_top_k": number(0, 1000000, integer=True),
}


def _get(cfg: DictConfig, key: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False, None
        try:
            node = node[part]
        except Exception as error:  # an interpolation that cannot resolve
            return True, f"<unresolvable: {error}>"
    return True, node


def config_problems(cfg: DictConfig) -> list[tuple[str, Any, str]]:
    """Every violation of the schema in `cfg`: (key, value given, what is allowed)."""
    problems: list[tuple[str, Any, str]] = []
    values: dict[str, Any] = {}
    for key, check in RULES.items():
        present, value = _get(cfg, key)
        if not present:
            continue
        values[key] = value
        allowed = check(value)
        if allowed:
            problems.append((key, value, allowed))
    bad = {key for key, _, _ in problems}

    def both(a: str, b: str) -> bool:
        return a in values and b in values and not {a, b} & bad and values[a] is not None and values[b] is not None

    if both("plan.target_seconds", "plan.max_seconds") and values["plan.target_seconds"] > values["plan.max_seconds"]:
        problems.append(("plan.target_seconds", values["plan.target_seconds"],
                         f"must be at most plan.max_seconds ({values['plan.max_seconds']:g}); lower it or raise "
                         "plan.max_seconds"))
    if both("plan.max_seconds", "plan.max_run_seconds") and values["plan.max_run_seconds"] < values["plan.max_seconds"]:
        problems.append(("plan.max_run_seconds", values["plan.max_run_seconds"],
                         f"must be at least plan.max_seconds ({values['plan.max_seconds']:g})"))
    if both("narration.min_duration_ratio", "narration.max_duration_ratio") and \
            values["narration.min_duration_ratio"] >= values["narration.max_duration_ratio"]:
        problems.append(("narration.min_duration_ratio", values["narration.min_duration_ratio"],
                         f"must be below narration.max_duration_ratio ({values['narration.max_duration_ratio']:g})"))
    if values.get("voice_text") not in (None, "") and values.get("voice_text_file") is not None:
        problems.append(("voice_text_file", values["voice_text_file"],
                         "give the transcript once: voice_text=... or voice_text_file=PATH, not both"))
    has_text = values.get("voice_text") not in (None, "") or values.get("voice_text_file") is not None
    if has_text and "voice" in values and values["voice"] is None:
        key = "voice_text" if values.get("voice_text") not in (None, "") else "voice_text_file"
        problems.append((key, values[key], "a transcript needs its recording: add voice=PATH (the audio it transcribes)"
                         ", or drop the transcript"))
    if values.get("quality.asr") == "whisper" and "quality.asr" not in bad and values.get("quality.asr_path") is None \
            and values.get("quality.enabled") is not False and values.get("quality.wer") is not False:
        problems.append(("quality.asr_path", None, "quality.asr=whisper needs the local folder of a Whisper model "
                         "(config.json, *.safetensors, processor files); or use quality.asr=pocketsphinx"))
    model = values.get("model")
    if isinstance(model, str) and "model" not in bad and model not in MODEL_NAMES and not _looks_like_path(model):
        problems.append(("model", model, f"valid choices: {', '.join(MODEL_NAMES)}, or a local checkpoint folder"))
    return problems


def _looks_like_path(name: str) -> bool:
    return "/" in name or name.startswith((".", "~")) or Path(name).expanduser().exists()


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError listing every violation of the schema in `cfg` (nothing is written)."""
    problems = config_problems(cfg)
    if problems:
        raise ConfigError(problems)


def check_files(cfg: DictConfig) -> list[tuple[str, Any, str]]:
    """The files the config names: the manuscript, voice, transcript file and lexicon exist and are files."""
    problems: list[tuple[str, Any, str]] = []
    source = cfg.get("input")
    if source is not None:
        path = Path(str(source)).expanduser()
        if path.suffix.lower() not in MANUSCRIPT_SUFFIXES:
            problems.append(("input", source, f"the manuscript must be one of {', '.join(MANUSCRIPT_SUFFIXES)}"))
        elif path.is_dir():
            problems.append(("input", source, "is a folder; give the manuscript file itself"))
        elif not path.is_file():
            problems.append(("input", source, "no such file; check the path (relative to where the command runs)"))
    for key, what in (("voice", "a wav, flac, mp3 or m4a recording"), ("voice_text_file", "a UTF-8 text file"),
                      ("lexicon", "a UTF-8 file of term<TAB>pronunciation lines")):
        value = cfg.get(key)
        if value is None:
            continue
        path = Path(str(value)).expanduser()
        if path.is_dir():
            problems.append((key, value, f"is a folder, not a file; give {what}"))
        elif not path.is_file():
            problems.append((key, value, f"no such file; give {what}"))
    return problems


def voice_transcript(cfg: DictConfig) -> tuple[str | None, str | None]:
    """The voice's transcript and where it came from: voice_text=, voice_text_file=, or <voice>.txt beside it."""
    given = cfg.get("voice_text")
    if given is not None and str(given).strip():
        return str(given).strip(), "voice_text"
    file = cfg.get("voice_text_file")
    candidates = [(Path(str(file)).expanduser(), "voice_text_file")] if file is not None else []
    voice = cfg.get("voice")
    if file is None and voice is not None:
        candidates.append((Path(str(voice)).expanduser().with_suffix(".txt"), "beside the voice"))
    for path, origin in candidates:
        if not path.is_file():
            continue
        try:
            content = path.read_bytes().decode("utf-8-sig").strip()
        except UnicodeDecodeError:
            raise InputError(path, "", "the transcript is not UTF-8 text", "save it as UTF-8") from None
        if not content:
            if origin == "voice_text_file":
                raise InputError(path, "", "the transcript file is empty", "write the words spoken in the voice file")
            continue
        return " ".join(content.split()), f"{origin} ({path})"
    return None, None


MARKER = ".moss-narrator.json"  # in every output folder this tool writes: whose book it holds
# Folders that are never an output: written into, they would damage the system or a user's files.
_NEVER = ("/", "/home", "/root", "/tmp", "/var", "/opt", "/srv", "/mnt", "/media", "/usr/local", "/Users",
          "/Volumes", "/private", "/System", "/Library", "/Applications")
_NEVER_INSIDE = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin",
                 "/sys", "/usr", "/var/lib", "/var/log", "/var/cache", "/var/spool", "/var/mail", "/System",
                 "/Library", "/private/etc")


def book_identity(source: Path) -> dict:
    """What names a book in its output's marker: its resolved path and the hash of its bytes."""
    import hashlib

    digest = hashlib.sha256(source.read_bytes()).hexdigest() if source.is_file() else None
    return {"path": str(source.expanduser().resolve()), "sha256": digest}


def forbidden_folder(path: Path) -> str | None:
    """What `path` is, when it is a folder the tool never writes into (root, system, home); else None."""
    import os

    folder = path.expanduser().absolute()
    home = Path.home().resolve()
    for candidate in {folder, Path(os.path.realpath(folder))}:
        text = str(candidate)
        if text in _NEVER or candidate == home or any(text == p or text.startswith(p + "/") for p in _NEVER_INSIDE):
            return "the home folder" if candidate == home else "the root folder" if text == "/" else "a system folder"
    return None


def output_problems(output: Path, source: Path | None, overwrite: bool) -> list[tuple[str, Any, str]]:
    """Why `output` must not be written (nothing is created here): a system or home folder, a
    file, a place without write permission, or a non-empty folder that is not this book's output."""
    import json
    import os

    folder = output.expanduser().absolute()
    resolved = Path(os.path.realpath(folder))
    fix = "pass output=DIR naming a folder of its own, e.g. output=outputs/mybook"
    forbidden = forbidden_folder(output)
    if forbidden:
        return [("output", str(output), f"is {forbidden}; the tool never writes there: {fix}")]
    if resolved.exists() and not resolved.is_dir():
        return [("output", str(output), f"is a file, not a folder: {fix}")]
    existing = resolved
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return [("output", str(output), f"cannot be created: {existing} is a file, not a folder: {fix}")]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [("output", str(output), f"the output folder is not writable (no permission to write in "
                 f"{existing}): {fix}")]
    if resolved.is_dir() and any(resolved.iterdir()) and not overwrite:
        marker = resolved / MARKER
        owner = None
        if marker.is_file():
            try:
                owner = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                owner = None
        if owner is None:
            return [("output", str(output), "is a non-empty folder that this tool did not write; its files would be "
                     f"replaced. Pass output=DIR to an empty or new folder, or overwrite=true to write into it")]
        if source is not None:
            mine = book_identity(source)
            theirs = owner.get("book", {})
            if mine["path"] != theirs.get("path") and mine["sha256"] != theirs.get("sha256"):
                return [("output", str(output), f"holds the output of another book ({theirs.get('path')}); "
                         "pass output=DIR to a folder of its own, or overwrite=true to replace it")]
    return []


def claim_output(output: Path, source: Path | None, job: str, config_yaml: str) -> Path:
    """Create the output folder, mark it as this book's, and write the composed config (after every check)."""
    import json

    folder = output.expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        marker = {"tool": "moss-narrator", "job": job, "book": book_identity(source) if source else None}
        _atomic_write(folder / MARKER, json.dumps(marker, indent=1))
        _atomic_write(folder / "config.yaml", config_yaml)
    except OSError as error:
        raise InputError(str(output), "", f"the output folder is not writable ({error.strerror or error})",
                         "pass output=DIR to a folder you can write") from error
    return folder.resolve()


def _atomic_write(path: Path, content: str) -> None:
    from pipeline.index import write_atomically

    write_atomically(path, lambda temporary: temporary.write_text(content, encoding="utf-8"))
