"""FFmpeg's own EBU R128 meter (``ebur128=peak=true``), the independent check on delivered files.

The summary prints one decimal; the true peak is also injected as per-frame metadata with
three decimals of linear amplitude (0.01 dB near full scale), so the maximum over frames is
the finer figure.
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FfmpegMeasurement:
    lufs: float
    true_peak_dbtp: float


def ebur128(path: str | Path) -> FfmpegMeasurement:
    result = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-map", "0:a:0", "-af",
         "ebur128=peak=true:metadata=1,ametadata=print:key=lavfi.r128.true_peaks_ch0:file=-",
         "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )
    peaks = [float(v) for v in re.findall(r"true_peaks_ch0=([0-9.]+)", result.stdout)]
    integrated = re.findall(r"I:\s+(-?[0-9.]+|-inf) LUFS", result.stderr)
    if not peaks or not integrated:
        raise AssertionError(f"no ebur128 summary for {path}:\n{result.stderr[-2000:]}")
    peak = max(peaks)
    return FfmpegMeasurement(float(integrated[-1]), 20 * math.log10(peak) if peak > 0 else -math.inf)
