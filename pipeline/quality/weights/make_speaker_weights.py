"""Write speaker_encoder.safetensors from the encoder the ``resemblyzer`` package ships.

    python pipeline/quality/weights/make_speaker_weights.py           # (re)write the file
    python pipeline/quality/weights/make_speaker_weights.py --check   # compare the file with the package

The package stores its weights as a PyTorch pickle and loads them itself (``VoiceEncoder()``);
this script only takes the loaded module's tensors, so no code of this project reads a pickle.
It keeps the LSTM and the linear layer, in float16 (2.9 MB instead of 5.7): embeddings computed
with the float16 copy match the original's to a cosine of 0.9999997 or better on the shared voice
recordings. ``pipeline.quality.speaker`` loads the file back into float32.

Run by hand, with the package and what it imports:
``pip install --no-deps resemblyzer && pip install webrtcvad-wheels librosa``. The output is committed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

OUT = Path(__file__).resolve().parent / "speaker_encoder.safetensors"
KEPT = ("lstm.", "linear.")
STORED_DTYPE = torch.float16


def package_tensors() -> dict[str, torch.Tensor]:
    """The encoder's tensors as the package loads them, rounded to the stored dtype."""
    try:
        from resemblyzer import VoiceEncoder  # pyright: ignore[reportMissingImports]  (needed only to regenerate)
    except ImportError as error:
        raise SystemExit(f"cannot import resemblyzer ({error}): pip install --no-deps resemblyzer && "
                         "pip install webrtcvad-wheels librosa") from error
    encoder = VoiceEncoder("cpu", verbose=False)
    return {k: v.detach().to(STORED_DTYPE).contiguous() for k, v in encoder.state_dict().items() if k.startswith(KEPT)}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare the committed file with the package, write nothing")
    args = parser.parse_args()
    tensors = package_tensors()
    if args.check:
        stored = load_file(str(OUT))
        same = stored.keys() == tensors.keys() and all(torch.equal(stored[k], tensors[k]) for k in tensors)
        print(f"{OUT.name}: {'equal to' if same else 'DIFFERENT from'} the resemblyzer package's encoder")
        return 0 if same else 1
    save_file(tensors, str(OUT), metadata={"source": "resemblyzer 0.1.4 VoiceEncoder", "dtype": "float16",
                                           "license": "Apache-2.0"})
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.1f} MB, {len(tensors)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
