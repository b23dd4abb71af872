"""Voice references: the shared real files and synthetic ones in every format, rate and width load to
24 kHz mono of the right duration at the spec's level; bad files fail with their name."""

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from moss_model.audio_io import AudioLoadError, load_audio, load_reference_audio, normalize_level, read_audio

VOICES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "voices"
HAVE_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
needs_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG, reason="FFmpeg is not installed")


def ffprobe_seconds(path: Path) -> float:
    """Playable duration as FFmpeg sees it: stream duration minus the encoder-delay start time."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=duration,start_time",
         "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    stream = json.loads(out)["streams"][0]
    return float(stream["duration"]) - float(stream.get("start_time") or 0.0)


@pytest.mark.parametrize(
    "name, rate, channels",
    [
        ("reference_02_s1.wav", 16000, 1),
        ("reference_zh.wav", 48000, 1),
        ("reference_en_1.mp3", 44100, 2),
        ("reference_en.m4a", 44100, 2),
    ],
)
def test_shared_references_load_to_24k_mono_of_the_right_duration(name, rate, channels):
    path = VOICES / name
    if not path.is_file():
        pytest.skip(f"shared voice {path} not found")
    if name.endswith(".m4a") and not HAVE_FFMPEG:
        pytest.skip("FFmpeg is not installed")
    data, found_rate = read_audio(path)
    assert (found_rate, data.shape[0]) == (rate, channels)
    wav = load_reference_audio(path)
    assert wav.dim() == 1 and wav.dtype == torch.float32
    assert wav.shape[0] == math.ceil(data.shape[1] * 24000 / rate)  # resampled, nothing lost or added
    seconds = wav.shape[0] / 24000
    if name.endswith(".wav"):
        info = soundfile.info(str(path))
        assert info.samplerate == rate
        assert abs(seconds - info.frames / info.samplerate) <= 1 / 24000
    if HAVE_FFMPEG:
        # decoders differ on MP3/AAC encoder delay and padding by a few ms at most
        assert abs(seconds - ffprobe_seconds(path)) < 0.02, (seconds, ffprobe_seconds(path))
    rms_db = 10 * math.log10(float((wav**2).mean()))
    raw_db = 10 * math.log10(float((load_audio(path) ** 2).mean()))
    expected_db = min(max(-20.0, raw_db - 3), raw_db + 3)  # toward -20 dBFS, the gain within +-3 dB
    assert abs(rms_db - expected_db) < 1e-3


def tone(rate: int, seconds: float, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wav: torch.Tensor, rate: int = 24000) -> float:
    spectrum = np.abs(np.fft.rfft(wav.numpy() * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize(
    "suffix, subtype, rate",
    [
        (".wav", "PCM_16", 16000),
        (".wav", "PCM_24", 48000),
        (".wav", "PCM_32", 44100),
        (".wav", "FLOAT", 22050),
        (".flac", "PCM_16", 32000),
        (".flac", "PCM_24", 24000),
        (".mp3", "MPEG_LAYER_III", 44100),
    ],
)
def test_formats_widths_and_rates(tmp_path, suffix, subtype, rate):
    path = tmp_path / f"tone{suffix}"
    soundfile.write(str(path), tone(rate, 1.5), rate, subtype=subtype)
    wav = load_audio(path)
    assert abs(wav.shape[0] - 1.5 * 24000) <= (0.06 * 24000 if suffix == ".mp3" else 1)
    assert abs(peak_hz(wav) - 440.0) < 2.0  # the pitch survives the rate change
    middle = wav[2400:-2400]
    assert abs(float(middle.abs().max()) - 0.5) < (0.03 if suffix == ".mp3" else 0.005)  # no level change


@needs_ffmpeg
@pytest.mark.parametrize("suffix, codec", [(".m4a", "aac"), (".ogg", "libvorbis"), (".opus", "libopus")])
def test_ffmpeg_formats(tmp_path, suffix, codec):
    source = tmp_path / "tone.wav"
    soundfile.write(str(source), np.stack([tone(44100, 1.0), tone(44100, 1.0, amp=0.1)], axis=1), 44100)
    target = tmp_path / f"tone{suffix}"
    made = subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), "-c:a", codec, str(target)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"this FFmpeg cannot encode {codec}")
    wav = load_audio(target)
    assert abs(wav.shape[0] / 24000 - 1.0) < 0.03
    assert abs(peak_hz(wav) - 440.0) < 2.0
    assert abs(float(wav[4800:-4800].abs().max()) - 0.3) < 0.03  # (0.5 + 0.1) / 2: channels averaged


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = tone(24000, 0.5, amp=0.4), tone(24000, 0.5, freq=1000, amp=0.2)
    path = tmp_path / "stereo.wav"
    soundfile.write(str(path), np.stack([left, right], axis=1), 24000, subtype="FLOAT")
    wav = load_audio(path)
    np.testing.assert_allclose(wav.numpy(), (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("level_db, expected_db", [(-40.0, -37.0), (-21.0, -20.0), (-18.5, -20.0), (-10.0, -13.0)])
def test_level_is_scaled_toward_minus_20_dbfs_with_the_gain_clamped(level_db, expected_db):
    wav = torch.from_numpy(tone(24000, 1.0, amp=1.0))
    wav = wav * (10 ** (level_db / 20) / wav.pow(2).mean().sqrt())
    out = normalize_level(wav)
    assert abs(10 * math.log10(float(out.pow(2).mean())) - expected_db) < 1e-3
    assert normalize_level(torch.zeros(100)).abs().max() == 0  # silence stays silence


def test_unreadable_files_raise_a_clear_error_naming_the_file(tmp_path):
    assert issubclass(AudioLoadError, ValueError)
    missing = tmp_path / "nowhere.wav"
    with pytest.raises(AudioLoadError, match=r"nowhere\.wav does not exist"):
        load_reference_audio(missing)
    empty = tmp_path / "empty.wav"
    soundfile.write(str(empty), np.zeros(0, dtype=np.float32), 24000)
    with pytest.raises(AudioLoadError, match=r"empty\.wav holds no samples"):
        load_reference_audio(empty)
    zero_bytes = tmp_path / "zero.flac"
    zero_bytes.write_bytes(b"")
    with pytest.raises(AudioLoadError, match=r"zero\.flac"):
        load_reference_audio(zero_bytes)
    garbage = tmp_path / "garbage.m4a"
    garbage.write_bytes(b"this is not audio at all" * 50)
    with pytest.raises(AudioLoadError, match=r"cannot read audio file .*garbage\.m4a"):
        load_reference_audio(garbage)
    with pytest.raises(AudioLoadError, match="is not a file"):
        load_reference_audio(tmp_path)
