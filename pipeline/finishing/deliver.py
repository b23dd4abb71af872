"""Delivering a file: encode, decode what was written, measure it, correct until it passes.

A lossy encoder changes the signal it is given: peaks overshoot (0.5 to 1 dB at 64 kbit/s,
several dB at 32 kbit/s) and a low-pass costs loudness (about 0.5 LU for MP3). So every
delivered file is measured after encoding (integrated loudness and 8x true peak, the same
meter as the masters), and when it misses (true peak above ``ceiling - guard`` or loudness
more than ``tolerance`` from the target) the source is re-leveled and re-limited by what the
measurement says and encoded again.

Before the first lossy pass a probe, three short excerpts of the source encoded the same
way, predicts the encoder's loudness change (a spectral matter, which excerpts show well)
and its overshoot (a matter of rare peaks, which they do not), so that one pass is usually
enough. When the source already keeps the lossy headroom under the ceiling (the finishing
masters do), the prediction is applied as a static gain within that headroom and the
source is not limited again; otherwise the first pass levels it and limits it again with
at least ``_FIRST_PASS_HEADROOM_DB`` of headroom. Sources are lists of pieces (a chapter, or the chapters of a book), each an array
or a FLAC file read when needed, so a whole book never has to sit in memory.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import soundfile

from pipeline.finishing import export, loudness
from pipeline.finishing.loudness import LimiterOptions, Measurement

Piece = np.ndarray | str | Path  # audio, or a FLAC file holding it
Encoder = Callable[[Iterator[np.ndarray], Path], Path]  # (PCM pieces, destination) -> written file


class DeliveryError(RuntimeError):
    """A delivered file could not be brought under the true-peak ceiling."""


@dataclass(frozen=True)
class DeliveryTarget:
    target_lufs: float
    ceiling_db: float  # dBTP, never to be exceeded by the delivered file
    # FFmpeg's ebur128 meter reads up to ~0.05 dB above ours: files aim this far under the ceiling
    guard_db: float = 0.1
    tolerance_lu: float = 0.5
    max_passes: int = 3
    adjust_loudness: bool = True  # False for near-silent sources: never boosted
    limiter: LimiterOptions = LimiterOptions()

    @property
    def peak_limit_db(self) -> float:
        return self.ceiling_db - self.guard_db

    def passes(self, measured: Measurement) -> bool:
        return self.passes_figures(measured.lufs, measured.true_peak_dbtp)

    def passes_figures(self, lufs: float, true_peak_dbtp: float) -> bool:
        peak_ok = true_peak_dbtp <= self.peak_limit_db
        loud_ok = not self.adjust_loudness or not math.isfinite(lufs) or abs(lufs - self.target_lufs) <= self.tolerance_lu
        return peak_ok and loud_ok


@dataclass(frozen=True)
class Delivered:
    path: str
    lufs: float  # measured on the delivered file
    true_peak_dbtp: float  # measured on the delivered file (8x oversampled)
    passes: int  # encodes it took
    source_lufs: float | None  # loudness the source was brought to before encoding (None: as it was)
    limit_db: float  # the limiter ceiling the source was held under
    on_target: bool  # loudness within the tolerance (the true peak always is)


def measure_file(path: str | Path) -> Measurement:
    """Integrated loudness and true peak of an audio file, decoded at its own rate."""
    path = Path(path)
    if path.suffix.lower() == ".flac":
        rate = soundfile.info(str(path)).samplerate
        meter = loudness.Meter(rate)
        for block in soundfile.blocks(str(path), blocksize=1 << 20, dtype="float32"):
            meter.push(block if block.ndim == 1 else block.mean(axis=1))
        return meter.result()
    meter = loudness.Meter(export.audio_sample_rate(path))
    for chunk in export.decode_pcm(path):
        meter.push(chunk)
    return meter.result()


def _load(piece: Piece) -> np.ndarray:
    if isinstance(piece, np.ndarray):
        return piece
    audio, _ = soundfile.read(str(piece), dtype="float32", always_2d=False)
    return audio if audio.ndim == 1 else audio.mean(axis=1)


_NEAR_SILENT_LUFS = -50.0  # pieces quieter than this are never boosted


_BLOCK = 1 << 20  # samples limited at a time while the encoder works on the previous ones
_QUIET_RUN = 64  # zeros on both sides of a cut: the true peak there needs no context across it


def _blocks(audio: np.ndarray, size: int = _BLOCK) -> Iterator[np.ndarray]:
    """``audio`` in stretches of about ``size`` samples, cut only inside runs of digital
    silence (the inserted pauses), so that limiting them one by one is limiting the whole.
    A stretch without such a run stays whole."""
    start = 0
    while len(audio) - start > 2 * size:
        window = audio[start + size:start + 2 * size]
        zero = np.flatnonzero(window == 0.0)
        cut = None
        if len(zero) >= _QUIET_RUN:
            # a run of _QUIET_RUN zeros ends at i where zero[i] - zero[i - RUN + 1] == RUN - 1
            runs = np.flatnonzero(zero[_QUIET_RUN - 1:] - zero[: len(zero) - _QUIET_RUN + 1] == _QUIET_RUN - 1)
            if len(runs):
                cut = start + size + int(zero[runs[0] + _QUIET_RUN // 2])
        if cut is None:
            break
        yield audio[start:cut]
        start = cut
    yield audio[start:]


def _prepared(pieces: Sequence[Piece], rate: int, level_lufs: float | None, limit_db: float | None,
              options: LimiterOptions, peaks: list[float]) -> Iterator[np.ndarray]:
    """The pieces moved by one static gain to ``level_lufs`` (each on its own: chapters are
    separated by silence; near-silent ones are not boosted) and held under ``limit_db``;
    their true peaks go to ``peaks``. With neither, the pieces pass as they are. Yielded a
    block at a time, so FFmpeg encodes one block while the next is limited."""
    limiter = replace(options, ceiling_db=limit_db)
    for piece in pieces:
        audio = _load(piece)
        if level_lufs is None and limit_db is None:
            yield audio
            continue
        gain_db = 0.0
        if level_lufs is not None:
            current = loudness.integrated_loudness(audio, rate)
            if current > _NEAR_SILENT_LUFS:
                gain_db = level_lufs - current
        for block in _blocks(audio):
            scaled = block * np.float32(loudness.db_to_gain(gain_db))
            _, peak_db = loudness.limit_in_place(scaled, rate, limiter)
            peaks.append(peak_db)
            yield scaled


_PROBE_EXCERPTS = 3
_PROBE_SECONDS = 8.0
_PROBE_FADE_S = 0.01
_PROBE_GAP_S = 0.3


def _probe_audio(pieces: Sequence[Piece], rate: int) -> np.ndarray:
    """Excerpts from a quarter, half and three quarters of the way through, faded at the
    cuts and separated by silence (a hard cut would itself make the encoder overshoot)."""
    lengths = [len(p) if isinstance(p, np.ndarray) else soundfile.info(str(p)).frames for p in pieces]
    total = sum(lengths)
    size = min(int(_PROBE_SECONDS * rate), max(1, total // _PROBE_EXCERPTS))
    fade = min(int(_PROBE_FADE_S * rate), size // 2)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    parts = []
    for k in range(1, _PROBE_EXCERPTS + 1):
        start = max(0, min(total - size, total * k // (_PROBE_EXCERPTS + 1) - size // 2))
        index = 0
        while index < len(lengths) - 1 and start >= lengths[index]:
            start -= lengths[index]
            index += 1
        piece = pieces[index]
        if isinstance(piece, np.ndarray):
            excerpt = np.array(piece[start:start + size], dtype=np.float32)
        else:
            excerpt, _ = soundfile.read(str(piece), start=start, frames=size, dtype="float32", always_2d=False)
            excerpt = excerpt if excerpt.ndim == 1 else excerpt.mean(axis=1)
        excerpt = np.array(excerpt, dtype=np.float32)
        if fade and len(excerpt) > 2 * fade:
            excerpt[:fade] *= ramp
            excerpt[-fade:] *= ramp[::-1]
        parts += [excerpt, np.zeros(int(_PROBE_GAP_S * rate), np.float32)]
    return np.concatenate(parts)


def _probe(pieces: Sequence[Piece], rate: int, encode: Encoder, suffix: str) -> tuple[float, float]:
    """(true-peak overshoot in dB, loudness change in LU) the encoder causes on excerpts."""
    audio = _probe_audio(pieces, rate)
    before = loudness.measure(audio, rate)
    with tempfile.TemporaryDirectory(prefix=".probe-") as work:
        after = measure_file(encode(iter([audio]), Path(work) / f"probe{suffix}"))
    if not (math.isfinite(before.lufs) and math.isfinite(after.lufs)):
        return max(0.0, after.true_peak_dbtp - before.true_peak_dbtp), 0.0
    return max(0.0, after.true_peak_dbtp - before.true_peak_dbtp), after.lufs - before.lufs


_SAFETY_DB = 0.15  # extra headroom over a predicted or measured overshoot
_FIRST_PASS_HEADROOM_DB = 1.0  # lossy codecs at 64 kbit/s overshoot by up to ~0.8 dB on speech
_USUAL_OVERSHOOT_DB = 0.8  # room a static first-pass gain leaves at least for the overshoot


def _static_first_pass(target: DeliveryTarget, source_lufs: float | None, source_peak_db: float | None,
                       overshoot: float, change: float) -> float | None:
    """The static gain (dB) that brings the predicted delivered loudness to the target and
    keeps the predicted peak under the limit, or None when no gain does both (or the
    source's figures are unknown)."""
    if source_peak_db is None:
        return None
    # a probe samples a few peaks of many: room is kept for at least the usual overshoot
    room = target.peak_limit_db - (source_peak_db + max(overshoot + _SAFETY_DB, _USUAL_OVERSHOOT_DB))
    if not target.adjust_loudness:
        return 0.0 if room >= 0.0 else None
    if source_lufs is None or not math.isfinite(source_lufs):
        return None
    wanted = target.target_lufs - (source_lufs + change)
    gain = min(wanted, room)
    if abs(wanted - gain) > target.tolerance_lu / 2:
        return None
    return gain


def deliver(
    pieces: Sequence[Piece],
    sample_rate: int,
    destination: str | Path,
    encode: Encoder,
    target: DeliveryTarget,
    source_peak_db: float | None = None,
    probe: bool = True,
    source_lufs: float | None = None,
) -> Delivered:
    """Encode ``pieces`` (already at the target loudness, under the ceiling) to
    ``destination`` until the file measures within ``target``.

    ``source_peak_db``: the sources' known true peak (saves measuring it for a first pass
    that leaves them as they are). ``probe=False`` for lossless formats, or to send the
    sources as they are the first time. With the sources' loudness (``source_lufs``) and
    peak known, the probe's prediction is applied, where the headroom left allows, as a
    static gain (no limiter pass over the whole source); otherwise the first pass levels
    and limits the sources again as predicted.
    """
    if target.max_passes < 1:
        raise ValueError(f"max_passes must be at least 1, got {target.max_passes}")
    destination = Path(destination)
    level_lufs, limit_db = None, None  # the sources as they are
    static_gain_db = None
    if probe:
        overshoot, change = _probe(pieces, sample_rate, encode, destination.suffix)
        static_gain_db = _static_first_pass(target, source_lufs, source_peak_db, overshoot, change)
    if probe and static_gain_db is None:
        if target.adjust_loudness:
            level_lufs = target.target_lufs - float(np.clip(change, -3.0, 3.0))
        # a probe samples a few peaks of many: the first pass keeps at least this much headroom
        limit_db = target.peak_limit_db - max(overshoot + _SAFETY_DB, _FIRST_PASS_HEADROOM_DB)
    measured = None
    for attempt in range(1, target.max_passes + 1):
        if level_lufs is not None and limit_db is None:
            limit_db = target.peak_limit_db
        peaks: list[float] = []
        if static_gain_db is not None:
            # _static_first_pass chose a gain: the sources' peak is known, and their loudness where adjusted
            assert source_peak_db is not None
            gain = np.float32(loudness.db_to_gain(static_gain_db))
            path = encode((_load(piece) * gain for piece in pieces), destination)
            peaks.append(source_peak_db + static_gain_db)
            if target.adjust_loudness:
                assert source_lufs is not None
                level_lufs = source_lufs + static_gain_db
            static_gain_db = None
        else:
            path = encode(_prepared(pieces, sample_rate, level_lufs, limit_db, target.limiter, peaks), destination)
        measured = measure_file(path)
        if target.passes(measured):
            break
        # what the encoder added over this pass's source (unmeasured sources sit under the limit)
        source_peak = max(peaks) if peaks else (source_peak_db if source_peak_db is not None
                                                else target.peak_limit_db)
        overshoot = max(0.0, measured.true_peak_dbtp - source_peak)
        if target.adjust_loudness and math.isfinite(measured.lufs):
            level_lufs = (target.target_lufs if level_lufs is None else level_lufs) + target.target_lufs - measured.lufs
        as_is = limit_db is None
        current_limit = target.peak_limit_db if limit_db is None else limit_db
        if measured.true_peak_dbtp > target.peak_limit_db or as_is:
            # (a source that went as it was, and passed the peak, keeps the room it had
            # for the overshoot: only its loudness is corrected)
            # the last pass makes sure of the peak, whatever it costs in loudness
            extra = 0.5 if not as_is and attempt == target.max_passes - 1 else 0.0
            limit_db = min(current_limit, target.peak_limit_db - overshoot - _SAFETY_DB - extra)
        else:
            limit_db = current_limit
    assert measured is not None  # at least one pass (max_passes >= 1)
    if measured.true_peak_dbtp > target.peak_limit_db:
        raise DeliveryError(
            f"{destination.name} still measures {measured.true_peak_dbtp:.2f} dBTP after {target.max_passes} "
            f"encodes (ceiling {target.ceiling_db:g} dBTP less a {target.guard_db:g} dB guard); use a higher "
            "bitrate (finish.lossy_bitrate) or a lower ceiling (finish.true_peak_db)"
        )
    return Delivered(str(path), measured.lufs, measured.true_peak_dbtp, attempt, level_lufs,
                     target.peak_limit_db if limit_db is None else limit_db, target.passes(measured))
