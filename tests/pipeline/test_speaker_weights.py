"""The speaker encoder's weights: safetensors shipped in the package, equal to Resemblyzer's."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.quality.speaker import ENCODER_WEIGHTS, SpeakerEncoder

SCRIPT = Path(__file__).resolve().parents[2] / "pipeline" / "quality" / "weights" / "make_speaker_weights.py"


def test_the_shipped_weights_are_safetensors_and_load(tmp_path):
    assert ENCODER_WEIGHTS.suffix == ".safetensors" and ENCODER_WEIGHTS.is_file()
    encoder = SpeakerEncoder()
    assert encoder.model.lstm.weight_ih_l0.shape == (1024, 40)
    pickle_like = tmp_path / "pretrained.pt"
    pickle_like.write_bytes(b"not safetensors")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        SpeakerEncoder(weights=pickle_like)


@pytest.mark.skipif(any(importlib.util.find_spec(name) is None for name in ("resemblyzer", "webrtcvad", "librosa")),
                    reason="resemblyzer and what it imports are not installed: "
                           "pip install --no-deps resemblyzer && pip install webrtcvad-wheels librosa")
def test_the_shipped_weights_equal_the_resemblyzer_packages():
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "equal to" in done.stdout
