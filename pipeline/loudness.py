"""Loudness: BS.1770 integrated loudness, one book-wide target, a true-peak limiter.

- ``integrated_loudness`` measures a chapter with pyloudnorm (ITU-R BS.1770-4 gating).
- ``true_peak_envelope`` / ``true_peak_db`` estimate inter-sample peaks with 4x
  oversampling (the polyphase filter ``scipy.signal.resample_poly`` uses for 4x), computed
  only where a cheap bound says a sample could reach the threshold.
- ``limit_true_peak`` keeps the true peak under a ceiling with a look-ahead gain: the gain
  reaches its target before the peak (linear attack over the look-ahead), holds it across
  the peak and recovers at a slow constant rate in dB (release), so gain never bounces
  between close peaks (no pumping). Everything is vectorized; the release recursion
  ``D[n] = max(d[n], D[n-1] - r)`` is evaluated exactly as a running maximum.
- ``normalize_loudness`` applies one static gain to reach the target, limits, measures
  again and corrects the gain if the limiter cost loudness. Near-silent chapters get no
  boost and are flagged.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pyloudnorm
from scipy import fft, ndimage, signal

PRESETS: dict[str, float] = {"audiobook": -18.0, "podcast": -16.0, "broadcast": -23.0}

OVERSAMPLE = 4
_HALF_TAPS = 10  # the 4x interpolation filter spans +-10 input samples


def resolve_target(preset: str | None = "audiobook", target_lufs: float | None = None) -> float:
    """The loudness target in LUFS: ``target_lufs`` if given, else the preset's value."""
    if target_lufs is not None:
        target = float(target_lufs)
        if not -70.0 < target < 0.0:
            raise ValueError(f"loudness target must be between -70 and 0 LUFS, got {target}")
        return target
    if preset not in PRESETS:
        choices = ", ".join(f"{name} ({value:g} LUFS)" for name, value in PRESETS.items())
        raise ValueError(f"unknown loudness preset {preset!r}; valid presets: {choices}")
    return PRESETS[preset]


def db_to_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


def gain_to_db(gain: float) -> float:
    return 20.0 * math.log10(gain) if gain > 0 else -math.inf


# --- integrated loudness -----------------------------------------------------------------


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """BS.1770-4 integrated loudness in LUFS (pyloudnorm); ``-inf`` when everything is gated.

    Audio shorter than one 400 ms gating block is zero-padded to one block.
    """
    audio = np.asarray(audio, dtype=np.float32)
    block = int(math.ceil(0.4 * sample_rate))
    if len(audio) < block:
        audio = np.concatenate([audio, np.zeros(block - len(audio) + 1, dtype=np.float32)])
    meter = pyloudnorm.Meter(sample_rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(meter.integrated_loudness(audio))
    return value if math.isfinite(value) else -math.inf


# --- true peak ---------------------------------------------------------------------------

_FRAME = 4096  # FFT size of the overlap-save convolution
_HOP = _FRAME - 2 * _HALF_TAPS  # output samples per frame
_BATCH = 256  # frames per FFT batch (about 1 M samples)


@functools.lru_cache(maxsize=1)
def _phase_matrix() -> np.ndarray:
    """The ``[21, 4]`` coefficients of the four 4x phases over input offsets ``-10..10``.

    ``y[4n + p] = sum_o C[o + 10, p] * x[n + o]`` reproduces
    ``scipy.signal.resample_poly(x, 4, 1)`` (Kaiser-windowed sinc, beta 5, 81 taps).
    """
    half_len = _HALF_TAPS * OVERSAMPLE
    h = signal.firwin(2 * half_len + 1, 1.0 / OVERSAMPLE, window=("kaiser", 5.0)) * OVERSAMPLE
    coeffs = np.zeros((2 * _HALF_TAPS + 1, OVERSAMPLE))
    for p in range(OVERSAMPLE):
        for i, offset in enumerate(range(-_HALF_TAPS, _HALF_TAPS + 1)):
            k = p + half_len - OVERSAMPLE * offset
            if 0 <= k < len(h):
                coeffs[i, p] = h[k]
    return coeffs


@functools.lru_cache(maxsize=1)
def _phase_spectra() -> np.ndarray:
    """FFTs (size ``_FRAME``) of phases 1..3 as convolution kernels, ``[3, F]``.

    Phase 0 needs no filtering: its taps sit on the sinc's zeros except the centre one,
    so it is ``x[n] * C[10, 0]``.
    """
    kernels = np.zeros((OVERSAMPLE - 1, _FRAME), dtype=np.float32)
    kernels[:, : 2 * _HALF_TAPS + 1] = _phase_matrix()[::-1, 1:].T
    return fft.rfft(kernels, axis=1)


def _interpolation_bound() -> float:
    """Largest L1 norm of a phase filter: ``|y| <= bound * max|x|`` over the filter span."""
    return float(np.abs(_phase_matrix()).sum(axis=0).max())


def true_peak_envelope(audio: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Per-sample true peak: ``max(|x[n]|, |4x-oversampled points from n up to n+1|)``.

    Computed by overlap-save FFT convolution, frame by frame. With ``threshold``, frames
    whose samples cannot produce an oversampled value above it (a bound from the filter's
    L1 norm) are skipped and keep ``|x[n]|``: the envelope is then exact wherever it could
    exceed ``threshold``.
    """
    x = np.asarray(audio, dtype=np.float32)
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    frames_total = -(-n // _HOP)
    padded = np.zeros(frames_total * _HOP + 2 * _HALF_TAPS, dtype=np.float32)
    padded[_HALF_TAPS:_HALF_TAPS + n] = x
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(frames_total, _FRAME), strides=(_HOP * padded.itemsize, padded.itemsize), writeable=False
    )
    envelope = np.abs(padded[_HALF_TAPS:_HALF_TAPS + frames_total * _HOP]).reshape(frames_total, _HOP)
    envelope *= np.float32(max(1.0, abs(_phase_matrix()[_HALF_TAPS, 0])))
    if threshold is None:
        selected = np.arange(frames_total)
    else:
        block_peak = envelope.max(axis=1)
        # frame f reads its own block plus 10 samples of each neighbour block
        reach = np.maximum(block_peak, np.maximum(np.r_[0.0, block_peak[:-1]], np.r_[block_peak[1:], 0.0]))
        selected = np.flatnonzero(reach * _interpolation_bound() > threshold)
    spectra = _phase_spectra()
    for lo in range(0, len(selected), _BATCH):
        batch = selected[lo:lo + _BATCH]
        spectrum = fft.rfft(frames[batch], axis=1)
        best = envelope[batch]
        for phase_spectrum in spectra:
            values = fft.irfft(spectrum * phase_spectrum, n=_FRAME, axis=1)[:, 2 * _HALF_TAPS:]
            np.maximum(best, np.abs(values), out=best)
        envelope[batch] = best
    return envelope.reshape(-1)[:n]


def true_peak(audio: np.ndarray) -> float:
    """Linear true peak (4x oversampled) of the whole signal."""
    x = np.asarray(audio, dtype=np.float32)
    if len(x) == 0:
        return 0.0
    sample_peak = float(np.abs(x).max())
    if sample_peak == 0.0:
        return 0.0
    return float(true_peak_envelope(x, threshold=sample_peak).max())


def true_peak_db(audio: np.ndarray) -> float:
    """True peak in dBTP (``-inf`` for digital silence)."""
    return gain_to_db(true_peak(audio))


# --- limiter -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LimiterOptions:
    ceiling_db: float = -1.0  # dBTP
    margin_db: float = 0.1  # the limiter aims this far below the ceiling
    lookahead_ms: float = 5.0  # attack: the gain ramps down over this time before a peak
    release_db_per_s: float = 20.0  # recovery speed after a peak (slow, constant in dB)


_CONTROL_BLOCK = 16  # samples per gain-control step (0.67 ms at 24 kHz)
# A peak at p needs the gain lowered over p-10..p+10; a sample interpolates its gain from
# the control points of its own block and the next one, so reach 2 blocks either way.
_CONTROL_REACH = -(-_HALF_TAPS // _CONTROL_BLOCK) + 1


def _release(reduction_db: np.ndarray, rate: float, chunk: int = 1 << 20) -> np.ndarray:
    """``D[n] = max(d[n], D[n-1] - rate, 0)``, evaluated as a running maximum per chunk.

    Within a chunk starting at n0: ``D[n] = max_{k<=n}(d[k] + rate(k-n0)) - rate(n-n0)``,
    combined with the previous chunk's last value decayed by ``rate(n-n0+1)``.
    """
    out = np.empty(len(reduction_db), dtype=np.float64)
    carry = 0.0
    for lo in range(0, len(reduction_db), chunk):
        d = reduction_db[lo:lo + chunk].astype(np.float64)
        ramp = rate * np.arange(len(d), dtype=np.float64)
        held = np.maximum.accumulate(d + ramp) - ramp
        np.maximum(held, carry - ramp - rate, out=held)
        np.maximum(held, 0.0, out=held)
        out[lo:lo + len(d)] = held
        carry = float(held[-1])
    return out


def limiter_control(audio: np.ndarray, sample_rate: int, options: LimiterOptions = LimiterOptions()) -> np.ndarray:
    """Gain control points (<= 1), one per ``_CONTROL_BLOCK`` samples plus a final one.

    The gain at sample ``n = b * B + i`` is the linear interpolation between control
    points ``b`` and ``b + 1`` (see ``apply_control``). Steps:
    required reduction per block from the true-peak envelope, widened over the
    interpolation filter's span; slow release (constant dB/s); look-ahead attack as a
    forward running minimum over the look-ahead followed by a trailing mean of the same
    length. Every value averaged into point b is a minimum over a window containing b,
    so the smoothed gain never exceeds the gain a peak requires.
    """
    x = np.asarray(audio, dtype=np.float32)
    block = _CONTROL_BLOCK
    blocks = -(-len(x) // block)
    threshold = db_to_gain(options.ceiling_db - options.margin_db)
    envelope = true_peak_envelope(x, threshold=threshold)
    padded = np.zeros(blocks * block, dtype=np.float32)
    padded[: len(x)] = envelope
    del envelope
    peaks = padded.reshape(blocks, block).max(axis=1)
    del padded
    reduction = np.zeros(blocks + 1, dtype=np.float64)
    over = np.flatnonzero(peaks > threshold)
    if len(over) == 0:
        return np.ones(blocks + 1, dtype=np.float32)
    reduction[over] = 20.0 * np.log10(peaks[over] / threshold)
    reduction = ndimage.maximum_filter1d(reduction, size=2 * _CONTROL_REACH + 1, mode="constant")
    reduction = _release(reduction, options.release_db_per_s * block / sample_rate)
    gain = 10.0 ** (-reduction / 20.0)
    lookahead = max(1, int(round(options.lookahead_ms * 1e-3 * sample_rate / block)))
    if lookahead > 1:
        # size L, origin -(L//2): window [b, b+L-1]; origin (L-1)//2: window [b-L+1, b]
        gain = ndimage.minimum_filter1d(gain, size=lookahead, mode="nearest", origin=-(lookahead // 2))
        gain = ndimage.uniform_filter1d(gain, size=lookahead, mode="nearest", origin=(lookahead - 1) // 2)
    return np.minimum(gain, 1.0).astype(np.float32)


def apply_control(audio: np.ndarray, control: np.ndarray) -> np.ndarray:
    """``audio`` times the gain interpolated from ``control`` (a new float32 array)."""
    x = np.asarray(audio, dtype=np.float32)
    block = _CONTROL_BLOCK
    blocks = len(control) - 1
    out = np.zeros(blocks * block, dtype=np.float32)
    out[: len(x)] = x
    rows = out.reshape(blocks, block)
    start, end = control[:-1], control[1:]
    active = np.flatnonzero((start < 1.0) | (end < 1.0))
    weight = (np.arange(block, dtype=np.float32) / block)[None, :]
    for lo in range(0, len(active), 1 << 16):
        index = active[lo:lo + (1 << 16)]
        a, b = start[index, None], end[index, None]
        rows[index] *= a + (b - a) * weight
    return out[: len(x)]


def limit_true_peak(
    audio: np.ndarray, sample_rate: int, options: LimiterOptions = LimiterOptions()
) -> tuple[np.ndarray, float, float]:
    """Hold the true peak of ``audio`` under ``options.ceiling_db``.

    Returns the limited audio (float32), the gain reduction applied in dB (the deepest
    reduction of each pass, summed over passes; 0 when the limiter did nothing) and the
    measured true peak of the result in dBTP. A further pass runs in the rare case a pass
    leaves an inter-sample overshoot; should three passes not suffice, a static gain
    settles it, so the ceiling always holds.
    """
    x = np.asarray(audio, dtype=np.float32)
    reduction_db = 0.0
    ceiling = db_to_gain(options.ceiling_db)
    for _ in range(3):
        control = limiter_control(x, sample_rate, options)
        lowest = float(control.min())
        if lowest < 1.0:
            x = apply_control(x, control)
            reduction_db += -gain_to_db(lowest)
        peak = true_peak(x)
        if peak <= ceiling:
            break
    if peak > ceiling:
        scale = db_to_gain(options.ceiling_db - options.margin_db) / peak
        x = x * np.float32(scale)
        reduction_db += -gain_to_db(scale)
        peak = true_peak(x)
    return x, reduction_db, gain_to_db(peak)


# --- normalization -----------------------------------------------------------------------


@dataclass(frozen=True)
class LoudnessResult:
    audio: np.ndarray  # float32, normalized and limited
    input_lufs: float
    output_lufs: float
    gain_db: float  # static gain applied before the limiter
    limiter_reduction_db: float  # largest extra reduction by the limiter
    true_peak_dbtp: float  # measured on the output
    near_silent: bool  # True: no boost was applied because the input is (nearly) silent


def normalize_loudness(
    audio: np.ndarray,
    sample_rate: int,
    target_lufs: float,
    limiter: LimiterOptions = LimiterOptions(),
    near_silent_lufs: float = -50.0,
    tolerance_lu: float = 0.5,
    max_passes: int = 3,
) -> LoudnessResult:
    """Bring ``audio`` to ``target_lufs`` integrated loudness under the true-peak ceiling.

    One static gain reaches the target; the limiter then caps the true peak. If limiting
    lowered the loudness by more than ``tolerance_lu``, the gain is raised by the shortfall
    and the limiter rerun (at most ``max_passes`` passes). Input quieter than
    ``near_silent_lufs`` (or fully gated) gets no boost; it is only limited, and flagged.
    """
    x = np.asarray(audio, dtype=np.float32)
    input_lufs = integrated_loudness(x, sample_rate)
    near_silent = not input_lufs > near_silent_lufs
    gain_db = 0.0 if near_silent else target_lufs - input_lufs
    for _ in range(1 if near_silent else max_passes):
        applied_db = gain_db
        scaled = x * np.float32(db_to_gain(applied_db))
        limited, reduction, peak_db = limit_true_peak(scaled, sample_rate, limiter)
        del scaled
        output_lufs = integrated_loudness(limited, sample_rate)
        if near_silent or not math.isfinite(output_lufs) or abs(output_lufs - target_lufs) <= tolerance_lu:
            break
        gain_db = applied_db + target_lufs - output_lufs
    return LoudnessResult(
        audio=limited,
        input_lufs=input_lufs,
        output_lufs=output_lufs,
        gain_db=applied_db,
        limiter_reduction_db=reduction,
        true_peak_dbtp=peak_db,
        near_silent=near_silent,
    )
