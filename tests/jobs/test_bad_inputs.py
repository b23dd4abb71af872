"""Bad input through the real command: every case exits 2 with a message that names the value and
the fix, prints no traceback, and leaves the output folder as it was (or absent).

Each case builds its own small inputs; the table is the specification.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

pytestmark = pytest.mark.e2e  # real command, Ray and narration end to end: `make test-e2e`

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BOOK = "# A Small Book\n\n## One\n\nThe tide came in at dawn. The gulls were loud.\n\n## Two\n\nEvening fell.\n"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "pipeline.run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def write_wav(path: Path, seconds: float, amplitude: float = 0.3, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    tone = amplitude * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((tone * 32767).astype("<i2").tobytes())
    return path


def epub(path: Path, members: dict[str, bytes], stored: tuple[str, ...] = ()) -> Path:
    """A minimal EPUB: mimetype, container, package, one chapter, plus `members`."""
    base = {
        "mimetype": b"application/epub+zip",
        "META-INF/container.xml": b'<?xml version="1.0"?><container version="1.0" '
        b'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles><rootfile full-path="OEBPS/book.opf" '
        b'media-type="application/oebps-package+xml"/></rootfiles></container>',
        "OEBPS/book.opf": b'<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0" '
        b'unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:identifier id="id">x'
        b'</dc:identifier><dc:title>Small</dc:title><dc:language>en</dc:language></metadata><manifest>'
        b'<item id="c1" href="c1.xhtml" media-type="application/xhtml+xml"/></manifest><spine><itemref idref="c1"/>'
        b'</spine></package>',
        "OEBPS/c1.xhtml": b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><head><title>One</title>'
        b'</head><body><h1>One</h1><p>The tide came in at dawn.</p></body></html>',
    }
    base.update(members)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in base.items():
            method = zipfile.ZIP_STORED if name == "mimetype" or name in stored else zipfile.ZIP_DEFLATED
            archive.writestr(name, data, compress_type=method)
    return path


def bad_crc_epub(path: Path) -> Path:
    """A stored (uncompressed) chapter with one byte changed after its CRC was written."""
    epub(path, {}, stored=("OEBPS/c1.xhtml",))
    data = bytearray(path.read_bytes())
    at = data.index(b"The tide came in")
    data[at] = ord("t")
    path.write_bytes(bytes(data))
    return path


ENCRYPTION = (b'<?xml version="1.0"?><encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
              b'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:EncryptionMethod '
              b'Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/><enc:CipherData><enc:CipherReference '
              b'URI="OEBPS/c1.xhtml"/></enc:CipherData></enc:EncryptedData></encryption>')


@dataclass
class Case:
    name: str
    args: Callable[[Path], list[str]]  # the case's folder -> command-line arguments (output= is added)
    expect: tuple[str, ...]  # all of these appear in stderr: the value, and the fix
    output: Callable[[Path], Path] = field(default=lambda d: d / "out")  # the folder that must stay untouched
    setup_output: Callable[[Path], None] | None = None  # what the output holds before the run


def book(d: Path) -> Path:
    path = d / "small.md"
    path.write_text(BOOK, encoding="utf-8")
    return path


def plan(*extra: str) -> Callable[[Path], list[str]]:
    return lambda d: ["job=plan", f"input={book(d)}", *extra]


def narrate(*extra: str | Callable[[Path], str]) -> Callable[[Path], list[str]]:
    return lambda d: [f"input={book(d)}", "model=tiny", *(e(d) if callable(e) else e for e in extra)]


def manuscript(make: Callable[[Path], Path], *extra: str) -> Callable[[Path], list[str]]:
    return lambda d: ["job=plan", f"input={make(d)}", *extra]


def file(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name

    return make


def folder(name: str) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / name).mkdir()
        return d / name

    return make


def foreign_folder(out: Path) -> None:
    out.mkdir()
    (out / "thesis.docx").write_bytes(b"my only copy")
    (out / "config.yaml").write_text("mine: true\n")


def other_books_output(out: Path) -> None:
    out.mkdir()
    (out / ".moss-narrator.json").write_text(json.dumps(
        {"tool": "moss-narrator", "job": "narrate", "book": {"path": "/books/other.epub", "sha256": "0" * 64}}))
    (out / "plan.parquet").write_bytes(b"another book's plan")
    (out / "config.yaml").write_text("input: /books/other.epub\n")


CASES = [
    # --- configuration values (the schema) ---
    Case("loudness_preset", plan("finish.loudness_preset=loud"), ("finish.loudness_preset=loud", "audiobook, podcast")),
    Case("audio_temperature", plan("decoding.audio_temperature=-1"), ("decoding.audio_temperature=-1", ">= 0")),
    Case("audio_top_p", plan("decoding.audio_top_p=0"), ("decoding.audio_top_p=0", "> 0 and <= 1")),
    Case("text_top_k", plan("decoding.text_top_k=-5"), ("decoding.text_top_k=-5", "whole number >= 0")),
    Case("language", plan("language=xx"), ("language=xx", "auto, en, zh")),
    Case("target_above_max", plan("plan.target_seconds=40"), ("plan.target_seconds=40", "at most plan.max_seconds")),
    Case("max_seconds_zero", plan("plan.max_seconds=0"), ("plan.max_seconds=0", "> 0")),
    Case("run_shorter_than_segment", plan("plan.max_run_seconds=10"), ("plan.max_run_seconds=10", "at least plan.max_seconds")),
    Case("speaking_rate", plan("plan.speaking_rate.en=0"), ("plan.speaking_rate.en=0", "> 0")),
    Case("chapter_pattern", plan('plan.chapter_pattern="[a-"'), ("plan.chapter_pattern=[a-", "regular expression")),
    Case("encoding", plan("plan.encoding=klingon"), ("plan.encoding=klingon", "utf-8")),
    Case("true_peak", plan("finish.true_peak_db=3"), ("finish.true_peak_db=3", "<= 0")),
    Case("lossy_format", plan("finish.lossy_format=wav"), ("finish.lossy_format=wav", "mp3, opus, aac, or null")),
    Case("target_lufs", plan("finish.target_lufs=loud"), ("finish.target_lufs=loud", "a number > -70")),
    Case("lossy_bitrate", plan("finish.lossy_bitrate=fast"), ("finish.lossy_bitrate=fast", "like 64k")),
    Case("subtitles", plan("finish.subtitles=words"), ("finish.subtitles=words", "sentences, segments")),
    Case("pause", plan("finish.pauses.sentence=-0.5"), ("finish.pauses.sentence=-0.5", ">= 0")),
    Case("num_actors_text", plan("cluster.num_actors=abc"), ("cluster.num_actors=abc", "whole number >= 1")),
    Case("num_actors_zero", narrate("cluster.num_actors=0"), ("cluster.num_actors=0", "whole number >= 1")),
    Case("gpus_per_actor", narrate("cluster.gpus_per_actor=-1"), ("cluster.gpus_per_actor=-1", "or auto")),
    Case("more_actors_than_the_machine_holds", narrate("cluster.num_actors=5000"),
         ("5000 narrator actor(s)", "room for", "cluster.num_actors=")),
    Case("max_frames_zero", narrate("narration.max_frames_per_segment=0"), ("narration.max_frames_per_segment=0", ">= 13")),
    Case("max_attempts_zero", narrate("narration.max_attempts=0"), ("narration.max_attempts=0", ">= 1")),
    Case("duration_ratios", narrate("narration.min_duration_ratio=3"), ("narration.min_duration_ratio=3", "below narration.max_duration_ratio")),
    Case("capacity", narrate("narration.capacity=many"), ("narration.capacity=many", "or auto")),
    Case("overwrite_not_bool", plan("overwrite=maybe"), ("overwrite=maybe", "true or false")),
    Case("voice_text_without_voice", narrate('voice_text="Hello there."'), ("voice_text=Hello there.", "add voice=PATH")),
    Case("unknown_model", narrate("model=moss_tts_v9"), ("model=moss_tts_v9", "valid choices: auto, moss_tts")),
    Case("unknown_job_name", plan("job.name=narate"), ("narate", "valid choices: finish", "job=NAME")),
    Case("several_at_once", plan("decoding.audio_top_p=2", "finish.true_peak_db=1"),
         ("decoding.audio_top_p=2", "finish.true_peak_db=1")),
    # --- the command line itself (Hydra's grammar and groups) ---
    Case("unknown_group_choice", plan("cluster=moon"), ("moon", "local", "ray", "What to do")),
    Case("unknown_key", plan("narration.max_atempts=2"), ("max_atempts", "key from conf/config.yaml")),
    Case("unquoted_transcript", plan("voice_text=It's late, isn't it"), ("voice_text=It's late", "voice_text_file=PATH")),
    # --- output folders ---
    Case("output_root", plan(), ("output=/:", "root folder", "output=DIR"), output=lambda d: Path("/")),
    Case("output_etc", plan(), ("output=/etc", "system folder", "output=DIR"), output=lambda d: Path("/etc")),
    Case("output_usr_share", plan(), ("output=/usr/share/book", "system folder"), output=lambda d: Path("/usr/share/book")),
    Case("output_home", plan(), ("home folder", "output=DIR"), output=lambda d: Path.home()),
    Case("store_in_a_system_folder", narrate("store=/usr/lib/segments"), ("store=/usr/lib/segments", "system folder")),
    Case("output_foreign_folder", plan(), ("non-empty folder", "overwrite=true"), setup_output=foreign_folder),
    Case("output_other_book_finish", narrate("job=finish"), ("another book", "/books/other.epub", "overwrite=true"),
         setup_output=other_books_output),
    Case("output_is_a_file", plan(), ("is a file, not a folder", "output=DIR"),
         setup_output=lambda out: out.write_text("a file")),
    Case("output_below_a_file", plan(), ("is a file, not a folder", "output=DIR"),
         output=lambda d: d / "blocker" / "out", setup_output=None),
    # --- manuscripts ---
    Case("input_missing", manuscript(lambda d: d / "nowhere.md"), ("input=", "nowhere.md", "no such file")),
    Case("input_folder", manuscript(folder("book.md")), ("book.md", "is a folder")),
    Case("input_suffix", manuscript(file("book.pdf", b"%PDF")),
         ("book.pdf", ".txt, .text, .md, .markdown, .epub")),
    Case("input_empty", manuscript(file("e.txt", b"")), ("e.txt", "the file is empty", "What to do")),
    Case("input_binary", manuscript(file("b.txt", bytes(range(256)) * 8)),
         ("b.txt", "binary", "What to do")),
    Case("epub_not_zip", manuscript(file("n.epub", b"not a zip")),
         ("n.epub", "not a ZIP archive", "valid .epub")),
    Case("epub_bad_crc", manuscript(lambda d: bad_crc_epub(d / "crc.epub")), ("crc.epub", "OEBPS/c1.xhtml", "damaged", "fresh copy")),
    Case("epub_drm_encryption", manuscript(lambda d: epub(d / "drm.epub", {"META-INF/encryption.xml": ENCRYPTION})),
         ("drm.epub", "DRM-encrypted", "DRM-free")),
    Case("epub_drm_adobe_rights", manuscript(lambda d: epub(d / "adept.epub", {"META-INF/rights.xml": b"<rights/>"})),
         ("adept.epub", "Adobe ADEPT", "DRM-free")),
    Case("epub_zip_bomb_ratio", manuscript(lambda d: epub(d / "bomb.epub", {"OEBPS/pad.bin": bytes(4 << 20)})),
         ("bomb.epub", "OEBPS/pad.bin", "zip bomb", "plan.max_compression_ratio")),
    Case("epub_over_size_cap", manuscript(lambda d: epub(d / "big.epub", {"OEBPS/pad.bin": os.urandom(3 << 20)}),
                                          "plan.max_archive_mb=2"), ("big.epub", "over the 2 MB limit", "plan.max_archive_mb")),
    Case("lexicon_missing", plan("lexicon=/nonexistent/lexicon.tsv"), ("lexicon=/nonexistent/lexicon.tsv", "no such file")),
    Case("lexicon_folder", lambda d: plan(f"lexicon={d}")(d), ("lexicon=", "is a folder, not a file")),
    # --- voices ---
    Case("voice_missing", narrate(lambda d: f"voice={d / 'nowhere.wav'}"), ("voice=", "nowhere.wav", "no such file")),
    Case("voice_folder", narrate(lambda d: f"voice={d}"), ("voice=", "is a folder, not a file", "recording")),
    Case("voice_not_audio", narrate(lambda d: f"voice={file('v.wav', b'text')(d)}"),
         ("v.wav", "cannot be read", "convert it")),
    Case("voice_silent", narrate(lambda d: f"voice={write_wav(d / 'silent.wav', 4.0, amplitude=0.0)}"),
         ("silent.wav", "silent", "where the narrator speaks")),
    Case("voice_too_short", narrate(lambda d: f"voice={write_wav(d / 'short.wav', 0.4)}"), ("short.wav", "0.40 s", "3 to 20 seconds")),
    Case("voice_text_file_missing", narrate(lambda d: f"voice={write_wav(d / 'v.wav', 3)}", "voice_text_file=/nope/t.txt"),
         ("voice_text_file=/nope/t.txt", "no such file")),
    Case("voice_text_twice", narrate(lambda d: f"voice={write_wav(d / 'v.wav', 3)}", 'voice_text="Hi."',
                                     lambda d: f"voice_text_file={d / 'v.wav'}"), ("voice_text_file=", "not both")),
]


def snapshot(folder: Path) -> dict[str, bytes] | None:
    if not folder.exists():
        return None
    if folder.is_file():
        return {"": folder.read_bytes()}
    if folder in (Path("/"), Path("/etc"), Path.home()):  # too big to read: compare the listing
        return {p.name: b"" for p in folder.iterdir()}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_table_has_forty_cases():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_a_clear_error_and_nothing_is_written(case: Case, tmp_path: Path):
    work = tmp_path / "case"
    work.mkdir()
    if case.name == "output_below_a_file":
        (work / "blocker").write_text("x")
    output = case.output(work)
    if case.setup_output is not None:
        case.setup_output(output)
    before = snapshot(output)
    result = cli(*case.args(work), f"output={output}", cwd=work)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for text in case.expect:
        assert text in result.stderr, f"{text!r} not in:\n{result.stderr[-3000:]}"
    assert snapshot(output) == before
    assert not (work / "outputs").exists()  # nothing written where it ran either


def test_a_foreign_folder_is_used_with_overwrite_true_and_a_rerun_reuses_its_own(tmp_path: Path):
    source = book(tmp_path)
    out = tmp_path / "out"
    foreign_folder(out)
    assert cli("job=plan", f"input={source}", f"output={out}", "overwrite=true", cwd=tmp_path).returncode == 0
    assert (out / "plan.parquet").is_file() and (out / "thesis.docx").read_bytes() == b"my only copy"
    marker = json.loads((out / ".moss-narrator.json").read_text())
    assert marker["book"]["path"] == str(source.resolve())
    rerun = cli("job=plan", f"input={source}", f"output={out}", cwd=tmp_path)  # its own output: no overwrite needed
    assert rerun.returncode == 0, rerun.stderr
    source.write_text(BOOK + "\nA line added later.\n", encoding="utf-8")  # an edited manuscript is the same book
    assert cli("job=plan", f"input={source}", f"output={out}", cwd=tmp_path).returncode == 0


def test_quoted_transcripts_pass(shared_data: Path, tmp_path: Path):
    """The README's quoting works for the shared transcripts (apostrophes, commas, Chinese)."""
    source = book(tmp_path)
    rows = [line.split("\t") for line in (shared_data / "voices" / "transcripts.tsv").read_text().splitlines()[1:]]
    for name, transcript in rows:
        result = cli("job=plan", f"input={source}", f"output={tmp_path / 'out'}", f"voice={shared_data / 'voices' / name}",
                     f'voice_text="{transcript}"', cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        import yaml

        config = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text(encoding="utf-8"))
        assert config["voice_text"] == transcript


def test_utf16_chinese_without_bom_is_read(tmp_path: Path):
    text = "第一章 一天\n\n一个人走在路上，天很冷。一二三四五六七八九十。\n\n第二章 下午\n\n他回家了。\n"
    for order in ("utf-16-le", "utf-16-be"):
        source = tmp_path / f"{order}.txt"
        source.write_bytes(text.encode(order))
        result = cli("job=plan", f"input={source}", f"output={tmp_path / order}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "binary" not in result.stderr


def test_a_long_voice_is_trimmed_with_a_notice_before_the_manuscript_is_read(tmp_path: Path):
    """check order: the voice is looked at (and trimmed) before the manuscript, which fails here."""
    rate = 16000
    speech = write_wav(tmp_path / "speech.wav", 12.0)
    voice = tmp_path / "long.wav"
    with wave.open(str(speech)) as src:
        frames = src.readframes(src.getnframes())
    with wave.open(str(voice), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(2 * rate * 25) + frames + bytes(2 * rate * 10))  # 25 s quiet, 12 s tone, 10 s quiet
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    result = cli(f"input={empty}", f"voice={voice}", "model=tiny", f"output={tmp_path / 'out'}", cwd=tmp_path)
    assert result.returncode == 2 and "the file is empty" in result.stderr
    assert "notice: the voice recording" in result.stdout and "47 s long" in result.stdout
    start = float(result.stdout.split(" s from ")[1].split(" s to ")[0])
    assert 17.0 <= start <= 25.0  # the window holds the whole tone
    assert not (tmp_path / "out").exists()


def test_transcript_from_a_file_or_beside_the_voice(tmp_path: Path):
    from omegaconf import OmegaConf

    from jobs.settings import voice_transcript

    voice = write_wav(tmp_path / "narrator.wav", 3.0)
    (tmp_path / "narrator.txt").write_text("\ufeffIt's late, isn't it?\n  Yes.\n", encoding="utf-8")
    cfg = OmegaConf.create({"voice": str(voice), "voice_text": None, "voice_text_file": None})
    assert voice_transcript(cfg) == ("It's late, isn't it? Yes.", f"beside the voice ({tmp_path / 'narrator.txt'})")
    other = tmp_path / "words.txt"
    other.write_text("太阳系八大行星之一。", encoding="utf-8")
    cfg.voice_text_file = str(other)
    assert voice_transcript(cfg)[0] == "太阳系八大行星之一。"
    cfg.voice_text = "Given here."
    assert voice_transcript(cfg)[0] == "Given here."
