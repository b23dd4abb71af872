"""Re-record the golden normalization table from upstream's own function.

    python tests/moss_model/data/record_normalize_golden.py UPSTREAM_CHECKOUT [--add INPUTS.json]

UPSTREAM_CHECKOUT is a checkout of the OpenMOSS MOSS-TTS repository; the function is imported
from it (nothing of it is copied here). The inputs are those already in the table, plus any
given with --add (a JSON list of strings). Outputs are recomputed for every input and the
header records the upstream commit.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
from pathlib import Path

TABLE = Path(__file__).with_name("normalize_golden.jsonl")
UPSTREAM_FILE = "moss_tts_delay/tts_robust_normalizer_single_script.py"
FUNCTION = "normalize_tts_text"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", type=Path)
    parser.add_argument("--add", type=Path, help="a JSON list of more inputs")
    args = parser.parse_args()

    spec = importlib.util.spec_from_file_location("upstream_normalizer", args.upstream / UPSTREAM_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    upstream = getattr(module, FUNCTION)
    commit = subprocess.run(["git", "-C", str(args.upstream), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()

    inputs: list[str] = []
    if TABLE.exists():
        lines = TABLE.read_text(encoding="utf-8").split("\n")
        inputs = [json.loads(line)["input"] for line in lines[1:] if line.strip()]
    if args.add:
        inputs += json.loads(args.add.read_text(encoding="utf-8"))
    inputs = list(dict.fromkeys(inputs))

    header = {
        "recorded_from": f"OpenMOSS/MOSS-TTS@{commit}",
        "function": f"{UPSTREAM_FILE}:{FUNCTION}",
        "how": "each input passed once through upstream's function, imported from a checkout of that "
               "commit; regenerate with tests/moss_model/data/record_normalize_golden.py",
        "cases": len(inputs),
    }
    with TABLE.open("w", encoding="utf-8") as f:
        f.write(json.dumps(header, ensure_ascii=False) + "\n")
        for text in inputs:
            f.write(json.dumps({"input": text, "output": upstream(text)}, ensure_ascii=False) + "\n")
    print(f"{len(inputs)} cases written to {TABLE}")


if __name__ == "__main__":
    main()
