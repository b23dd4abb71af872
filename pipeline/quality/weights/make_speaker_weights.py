"""Write speaker_encoder.safetensors from the encoder the ``resemblyzer`` wheel ships.

    python pipeline/quality/weights/make_speaker_weights.py           # (re)write the file
    python pipeline/quality/weights/make_speaker_weights.py --check   # compare the file with the wheel

The wheel stores its weights as a PyTorch pickle (``resemblyzer/pretrained.pt``, with the
optimizer state of its training). The product loads safetensors only, so this script is the one
place that reads the pickle, with ``weights_only=True``; it keeps the tensors the encoder uses
(the LSTM and the linear layer) and writes them beside itself. Run it by hand after installing
``pip install --no-deps resemblyzer``; the output is committed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

OUT = Path(__file__).resolve().parent / "speaker_encoder.safetensors"
KEPT = ("lstm.", "linear.")


def wheel_tensors() -> dict[str, torch.Tensor]:
    spec = importlib.util.find_spec("resemblyzer")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("resemblyzer is not installed: pip install --no-deps 'resemblyzer>=0.1.4'")
    pickle_path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    checkpoint = torch.load(pickle_path, map_location="cpu", weights_only=True)
    return {k: v.contiguous() for k, v in checkpoint["model_state"].items() if k.startswith(KEPT)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare the committed file with the wheel, write nothing")
    args = parser.parse_args()
    tensors = wheel_tensors()
    if args.check:
        stored = load_file(str(OUT))
        same = stored.keys() == tensors.keys() and all(torch.equal(stored[k], tensors[k]) for k in tensors)
        print(f"{OUT.name}: {'equal to' if same else 'DIFFERENT from'} the resemblyzer wheel's encoder")
        return 0 if same else 1
    save_file(tensors, str(OUT), metadata={"source": "resemblyzer 0.1.4 pretrained.pt", "license": "Apache-2.0"})
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.1f} MB, {len(tensors)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
