"""Loudness: BS.1770 measurement, 8x true peak (checked against FFmpeg's meter), the limiter,
normalization to a target."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pyloudnorm
import pytest
import soundfile
from scipy import signal

from pipeline.finishing import loudness
from pipeline.finishing.loudness import LimiterOptions
from tests.pipeline.ffmeter import ebur128

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="FFmpeg not installed")

RATE = 24_000


def reference_true_peak_db(x: np.ndarray) -> float:
    """The test's own true peak: the whole signal 8x-oversampled in one go (float64)."""
    up = signal.resample_poly(np.asarray(x, dtype=np.float64), 8, 1)
    return 20 * math.log10(max(float(np.abs(up).max()), float(np.abs(x).max())))


def fft_true_peak_db(x: np.ndarray) -> float:
    """A second, independent estimate: FFT (sinc) 8x interpolation."""
    up = signal.resample(np.asarray(x, dtype=np.float64), 8 * len(x))
    return 20 * math.log10(float(np.abs(up).max()))


def reference_lufs(x: np.ndarray) -> float:
    return pyloudnorm.Meter(RATE).integrated_loudness(np.asarray(x, dtype=np.float64))


def speech_like(seconds: float, seed: int = 0, level: float = 0.1) -> np.ndarray:
    """Syllables: harmonic bursts with random loudness and fricative noise; peaky (PLR ~20 dB)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 130 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(0.7**k * np.sin(k * phase + k) for k in range(1, 10))
    envelope = np.zeros(n)
    pos = 0
    while pos < n:
        length = int(rng.uniform(0.1, 0.3) * RATE)
        take = min(length, n - pos)
        envelope[pos:pos + take] = rng.lognormal(0, 0.5) * np.hanning(length)[:take]
        pos += length + int(rng.choice([0.03, 0.1, 0.4]) * RATE)
    return (level * envelope * (voice + 0.2 * rng.standard_normal(n))).astype(np.float32)


# --- measurement ------------------------------------------------------------------------


def test_resolve_target_presets_and_errors():
    assert loudness.resolve_target("audiobook") == -18.0
    assert loudness.resolve_target("podcast") == -16.0
    assert loudness.resolve_target("broadcast") == -23.0
    assert loudness.resolve_target("podcast", -20.0) == -20.0
    with pytest.raises(ValueError, match="valid presets: audiobook"):
        loudness.resolve_target("radio")
    with pytest.raises(ValueError):
        loudness.resolve_target(None, 3.0)


def test_integrated_loudness_of_a_known_tone():
    # BS.1770: a 997 Hz sine at -20 dBFS peak reads about -23 LUFS... the 1 kHz full-scale
    # sine reads -3.01 LUFS; at 24 kHz the K-weighting is the same within ~0.1 dB
    t = np.arange(5 * RATE) / RATE
    tone = (10 ** (-20 / 20) * np.sin(2 * np.pi * 997 * t)).astype(np.float32)
    assert loudness.integrated_loudness(tone, RATE) == pytest.approx(-23.0, abs=0.15)


@pytest.mark.parametrize("seconds", [0.4, 0.41, 1.234, 7.05, 33.3])
@pytest.mark.parametrize("level", [1.0, 0.01, 0.0004])
def test_integrated_loudness_equals_pyloudnorm(seconds, level):
    x = speech_like(seconds, seed=int(seconds * 100), level=level)
    assert loudness.integrated_loudness(x, RATE) == pytest.approx(reference_lufs(x), abs=1e-4)


def test_silence_and_very_short_audio():
    assert loudness.integrated_loudness(np.zeros(RATE, np.float32), RATE) == -math.inf
    short = (0.1 * np.sin(np.arange(2_000) / 5)).astype(np.float32)  # 83 ms, padded to one block
    assert math.isfinite(loudness.integrated_loudness(short, RATE))
    assert loudness.true_peak_db(np.zeros(10, np.float32)) == -math.inf


@pytest.mark.parametrize("n", [1, 7, 21, 4064, 4065, 8152, 30_001, 2_100_000])
def test_true_peak_envelope_matches_resample_poly(n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    up = signal.resample_poly(x.astype(np.float64), 8, 1).reshape(n, 8)
    expected = np.maximum(np.abs(x), np.abs(up).max(axis=1))
    np.testing.assert_allclose(loudness.true_peak_envelope(x), expected, atol=2e-6)
    # thresholded: exact wherever the true peak can exceed the threshold, never above it elsewhere
    threshold = 2.0
    partial = loudness.true_peak_envelope(x, threshold=threshold)
    above = expected > threshold
    np.testing.assert_allclose(partial[above], expected[above], atol=2e-6)
    assert np.all(partial[~above] <= threshold + 1e-6)
    assert loudness.true_peak_db(x) == pytest.approx(reference_true_peak_db(x), abs=1e-4)


def test_true_peak_finds_inter_sample_peaks():
    # a quarter-rate sine sampled at +-45 degrees: samples at 0.707, true peak 1.0 (+3 dB)
    n = np.arange(4 * RATE)
    x = (0.5 * np.sin(2 * np.pi * n / 4 + np.pi / 4)).astype(np.float32)
    sample_peak_db = 20 * math.log10(float(np.abs(x).max()))
    # (the interpolation filter's passband ripple adds ~0.1 dB here: on the safe side)
    assert loudness.true_peak_db(x) - sample_peak_db == pytest.approx(3.01, abs=0.15)


def test_a_known_inter_sample_peak_between_samples():
    """8 kHz at 24 kHz, phased so that the samples sit at +-0.866 of the crest (-1.25 dB):
    the true peak is the amplitude itself."""
    n = np.arange(3 * RATE)
    amplitude = 0.9
    ramp = np.minimum(1.0, np.minimum(n, n[::-1]) / 2400.0)  # fade in/out: no edge ringing
    x = (amplitude * ramp * np.cos(2 * np.pi * n / 3 + np.pi / 2)).astype(np.float32)
    assert 20 * math.log10(float(np.abs(x).max()) / amplitude) == pytest.approx(-1.25, abs=0.01)
    assert loudness.true_peak_db(x) == pytest.approx(20 * math.log10(amplitude), abs=0.1)


@needs_ffmpeg
def test_known_inter_sample_peak_agrees_with_ffmpegs_meter(tmp_path):
    # 6 kHz at 24 kHz sampled at +-45 degrees: samples at 0.707 of the crest, true peak +3 dB over them
    n = np.arange(4 * RATE)
    ramp = np.minimum(1.0, np.minimum(n, n[::-1]) / 2400.0)  # fade in/out: no edge ringing
    x = (0.6 * ramp * np.sin(2 * np.pi * n / 4 + np.pi / 4)).astype(np.float32)
    soundfile.write(tmp_path / "isp.wav", x, RATE, subtype="FLOAT")
    ours = loudness.true_peak_db(x)
    assert ours - 20 * math.log10(float(np.abs(x).max())) == pytest.approx(3.01, abs=0.1)
    assert ours == pytest.approx(ebur128(tmp_path / "isp.wav").true_peak_dbtp, abs=0.1)


@needs_ffmpeg
@pytest.mark.parametrize("kind", ["speech", "noise"])
@pytest.mark.parametrize("target", [-18.0, -16.0])
def test_true_peak_and_loudness_agree_with_ffmpegs_meter(tmp_path, kind, target):
    rng = np.random.default_rng(7)
    x = speech_like(20.0, seed=8) if kind == "speech" else (0.1 * rng.standard_normal(20 * RATE)).astype(np.float32)
    y = loudness.normalize_loudness(x, RATE, target).audio
    soundfile.write(tmp_path / "x.wav", y, RATE, subtype="FLOAT")
    ffmpeg = ebur128(tmp_path / "x.wav")
    measured = loudness.measure(y, RATE)
    assert measured.true_peak_dbtp == pytest.approx(ffmpeg.true_peak_dbtp, abs=0.1)
    assert measured.lufs == pytest.approx(ffmpeg.lufs, abs=0.15)  # (FFmpeg prints one decimal)


@pytest.mark.parametrize("step", [1, 13, 4096, 100_000])
def test_streaming_meter_equals_the_whole_signal_measurement(step):
    x = speech_like(7.3, seed=9, level=0.5)
    meter = loudness.Meter(RATE)
    for lo in range(0, len(x), step) if step > 1 else range(0, 3000):
        meter.push(x[lo:lo + step])
    if step == 1:  # one sample at a time for the first 3000, then the rest at once
        meter.push(x[3000:])
    result = meter.result()
    assert result.num_samples == len(x)
    assert result.lufs == pytest.approx(loudness.integrated_loudness(x, RATE), abs=1e-6)
    assert result.true_peak_dbtp == pytest.approx(loudness.true_peak_db(x), abs=1e-5)


def test_release_matches_the_recursive_definition():
    rng = np.random.default_rng(3)
    d = np.where(rng.random(5_000) < 0.01, rng.uniform(0, 12, 5_000), 0.0)
    rate = 0.05
    expected = np.empty_like(d)
    previous = 0.0
    for i, value in enumerate(d):  # the naive loop the vectorized version replaces
        previous = max(value, previous - rate, 0.0)
        expected[i] = previous
    np.testing.assert_allclose(loudness._release(d, rate, chunk=777), expected, atol=1e-6)


# --- limiter ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [16, 100, 1_601])
def test_apply_control_interpolates_linearly_between_control_points(n):
    rng = np.random.default_rng(n)
    x = rng.uniform(-1, 1, n).astype(np.float32)
    control = rng.uniform(0.2, 1.0, -(-n // 16) + 1).astype(np.float32)
    control[::3] = 1.0
    gain = np.interp(np.arange(n), np.arange(len(control)) * 16, control)  # the naive version
    out = loudness.apply_control(x, control)
    np.testing.assert_allclose(out, x * gain, rtol=1e-5, atol=1e-7)
    assert out is not x
    same = loudness.apply_control(x, control, in_place=True)
    assert same is x
    np.testing.assert_array_equal(x, out)


@pytest.mark.parametrize("ceiling", [-1.0, -2.0, -0.1])
def test_limiter_holds_the_ceiling(ceiling):
    x = speech_like(20.0, seed=1)
    x *= np.float32(10 ** ((ceiling + 8.0) / 20) / np.abs(x).max())  # peaks 8 dB over the ceiling
    options = LimiterOptions(ceiling_db=ceiling)
    y, reduction, measured = loudness.limit_true_peak(x, RATE, options)
    assert reduction > 6.0
    assert reference_true_peak_db(y) <= ceiling
    # an ideal (FFT) reconstruction reads higher than any practical meter for content right
    # at Nyquist, which the interpolation filter's transition band rolls off
    assert fft_true_peak_db(y) <= ceiling + 0.5
    assert measured == pytest.approx(reference_true_peak_db(y), abs=1e-3)
    # the gain only ever reduces, and it never flips the sign of the signal
    assert np.all(np.abs(y) <= np.abs(x) + 1e-7)
    assert np.all(y * x >= 0)


def test_limiter_leaves_quiet_audio_untouched():
    x = speech_like(5.0, seed=2)
    x *= np.float32(10 ** (-10 / 20) / np.abs(x).max())
    y, reduction, _ = loudness.limit_true_peak(x, RATE)
    assert reduction == 0.0
    np.testing.assert_array_equal(y, x)


def test_limiter_gain_is_ready_before_the_peak_and_recovers_slowly():
    # a steady tone with a short loud burst in the middle
    t = np.arange(3 * RATE) / RATE
    x = 0.3 * np.sin(2 * np.pi * 200 * t)
    burst = slice(RATE + 12_000, RATE + 12_240)  # 10 ms burst at 1.5 s
    x[burst] *= 10.0  # +9.5 dBFS: about 10.6 dB over a -1.1 dB aim
    x = x.astype(np.float32)
    options = LimiterOptions(ceiling_db=-1.0, lookahead_ms=5.0, release_db_per_s=20.0)
    control = loudness.limiter_control(x, RATE, options)
    block = loudness._CONTROL_BLOCK
    gain_db = 20 * np.log10(np.interp(np.arange(len(x)), np.arange(len(control)) * block, control))
    needed_db = -1.1 - 20 * math.log10(3.0)
    assert gain_db[burst].max() <= needed_db + 1e-3  # full reduction throughout the burst
    assert gain_db[: burst.start - 240].min() == 0.0  # untouched until 10 ms before the burst
    # release: a constant 20 dB/s, so 100 ms after the burst the gain has recovered 2 dB
    after = burst.stop + 2_400 + 10 * block
    recovered = gain_db[after] - gain_db[burst.stop + 10 * block]
    assert recovered == pytest.approx(2.0, abs=0.1)
    # and no pumping: the gain never moves up then down again after the burst
    tail = gain_db[burst.stop:]
    assert np.all(np.diff(tail) >= -1e-6)


def test_limiter_does_not_pump_on_a_train_of_peaks():
    # peaks every 100 ms: with a slow release the gain settles and barely moves between them
    t = np.arange(4 * RATE) / RATE
    x = 0.25 * np.sin(2 * np.pi * 150 * t)
    for start in range(0, len(x) - 240, 2_400):
        x[start:start + 120] *= 12.0  # ~10.6 dB over the aim
    x = x.astype(np.float32)
    control = loudness.limiter_control(x, RATE, LimiterOptions(release_db_per_s=20.0))
    steady = 20 * np.log10(control[len(control) // 2:])
    # swing at most the release over one period (20 dB/s * 0.1 s = 2 dB) plus a little
    assert steady.max() - steady.min() <= 2.1
    assert steady.max() < -5.0  # it never recovers towards 0 dB between peaks


# --- normalization ----------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["audiobook", "podcast", "broadcast"])
@pytest.mark.parametrize("level", [0.01, 0.1, 0.8])
def test_normalize_reaches_the_target_under_the_ceiling(preset, level):
    target = loudness.resolve_target(preset)
    x = speech_like(30.0, seed=4, level=level)
    result = loudness.normalize_loudness(x, RATE, target, LimiterOptions(ceiling_db=-1.0))
    assert not result.near_silent
    assert abs(reference_lufs(result.audio) - target) <= 1.0
    assert result.output_lufs == pytest.approx(reference_lufs(result.audio), abs=0.01)
    assert reference_true_peak_db(result.audio) <= -1.0
    assert result.true_peak_dbtp == pytest.approx(reference_true_peak_db(result.audio), abs=1e-3)


def test_near_silent_audio_is_not_boosted():
    x = speech_like(10.0, seed=5, level=0.0003)  # around -65 LUFS
    assert reference_lufs(x) < -55
    result = loudness.normalize_loudness(x, RATE, -18.0)
    assert result.near_silent
    assert result.gain_db == 0.0
    np.testing.assert_array_equal(result.audio, x)

    silent = loudness.normalize_loudness(np.zeros(3 * RATE, np.float32), RATE, -18.0)
    assert silent.near_silent and silent.input_lufs == -math.inf
    assert not np.isnan(silent.audio).any() and not silent.audio.any()


def test_ceiling_holds_even_if_the_limiter_falls_short(monkeypatch):
    # simulate a limiter that does nothing: the static safety gain must still hold the ceiling
    monkeypatch.setattr(loudness, "limiter_control", lambda x, rate, options: np.ones(len(x) // 16 + 2, np.float32))
    x = speech_like(3.0, seed=6)
    x *= np.float32(2.0 / np.abs(x).max())
    y, reduction, measured = loudness.limit_true_peak(x, RATE, LimiterOptions(ceiling_db=-1.0))
    assert reference_true_peak_db(y) <= -1.0
    assert measured == pytest.approx(reference_true_peak_db(y), abs=1e-3) and reduction > 7.0
