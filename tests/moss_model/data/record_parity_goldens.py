"""Record the upstream-parity goldens that tests/moss_model/test_parity_goldens.py checks on every run.

Regenerate (from the repository root, with checkouts of both upstream repositories):

    MOSS_TTS_UPSTREAM=/path/to/MOSS-TTS \\
    MOSS_AUDIO_TOKENIZER_UPSTREAM=/path/to/MOSS-Audio-Tokenizer \\
        .venv/bin/python tests/moss_model/data/record_parity_goldens.py

MOSS_TTS_UPSTREAM is a checkout of github.com/OpenMOSS/MOSS-TTS (its folder moss_tts_delay/ is
used), MOSS_AUDIO_TOKENIZER_UPSTREAM one of github.com/OpenMOSS/MOSS-Audio-Tokenizer (the folder
holding modeling_moss_audio_tokenizer.py); both must be git checkouts, their commits are recorded.
Nothing of upstream is copied here: its classes are imported from the checkouts and run, as in
test_upstream_parity.py and test_codec_upstream.py (which stay, for comparing live with a checkout).
After regenerating, run `make test ARGS=tests/moss_model/test_parity_goldens.py` and commit the
three files together.

What is built: the tiny random-weight checkpoints of those tests (our `write_tiny_model` with
seed 3 and the released text vocabulary of 151936, our `random_codec(tiny_codec_config(), seed=5)`),
loaded into upstream's classes with a strict state-dict check. What is recorded, from upstream only:

    parity_tts.npz    for each case of CASES: the processor's input ids; fp32 logits of one forward
                      pass at three positions, of the tiny weights and of their `loud` variant (a
                      fixed subset of columns, plus over each head's whole vocabulary its logsumexp
                      and four random-sign projections); the greedy generated rows of the tiny
                      model (`open`: a fixed number of steps) and of its `closing` variant (to the
                      stop, with the first audio run they decode to); the padded batch of all cases
                      (ids and mask); the codes the cases use
    parity_codec.npz  codes of encoding two fixed waveforms as one padded batch, and slices plus a
                      block-RMS envelope of decoding those codes
    parity_meta.json  upstream commits, library versions, tolerances, the cases, fingerprints of
                      the tiny checkpoints, and the names and shapes of every array

Known difference (an xfail in the test, left for a decision): upstream's generate() forbids the
text token 151662 at step 0, the released delay-slot id written as a number; ours forbids the
config's delay slot. They are the same token on released checkpoints, not on the tiny one (602),
where upstream lets a continuation close its audio at step 0 and ours does not.

The .npz files hold plain arrays only (read with allow_pickle=False). This module is also imported
by the test (for CASES, the checkpoints, the waveforms and the column choice); it imports upstream
only inside `record_*`.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

DATA = Path(__file__).resolve().parent
TTS_FILE = DATA / "parity_tts.npz"
CODEC_FILE = DATA / "parity_codec.npz"
META_FILE = DATA / "parity_meta.json"

TTS_SEED = 3
TEXT_VOCAB = 151936  # upstream hard-codes the released delay-slot id (151662) at step 0
CODEC_SEED = 5
LOUD_SEED = 9
N_VQ = 32
AUDIO_VOCAB = 1024
SPF = 1920  # codec samples per frame

OPEN_STEPS = 64  # rows of the `open` generation compared (upstream's max_new_tokens)
CLOSING_MAX_STEPS = 120  # upstream's max_new_tokens for the `closing` generation; it stops well before
# Ours against upstream when recorded: logits within 2.1e-6 (values up to 16), waveforms within
# 1e-5 (values up to 35), projections within a ninth of their tolerance (atol * sqrt(columns)).
# That leaves room for another machine's float order; a change of 1e-3 to any one logit, or to one
# weight of the loud variant (a layer's q/k/v, o, down projection or the final norm), still fails.
LOGIT_TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
WAVE_TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}
TEXT_EXTRA_COLUMNS = 96  # seeded text-vocabulary columns past the tiny tokenizer's ids
AUDIO_COLUMNS = 32  # seeded audio classes per codebook (the pad class 1024 always included)
PROJECTIONS = 4  # random-sign projections of each head's whole vocabulary, per position
ENVELOPE_BLOCK = 480  # samples per RMS block of the decoded-waveform envelope

# Requests. Codes are (frames, seed) of uniform random codes; they are stored in the golden.
CASES: list[dict] = [
    {"name": "en_plain", "text": "Hello world. This is a short test.", "tokens": 40},
    {"name": "en_reference", "text": "Clone me, please.", "language": "English", "reference": [[7, 1]]},
    {"name": "en_two_speakers", "text": "[S1] Good morning. [S2] Good evening.",
     "reference": [[5, 11], [4, 12]]},
    {"name": "zh_reference", "text": "亲爱的你，你好呀。今天天气很好！", "language": "Chinese", "reference": [[6, 21]]},
    {"name": "en_continuation", "prefix_text": "Before the storm. ", "text": "After it, calm.",
     "reference": [[7, 1]], "prefix": [12, 2]},
    {"name": "zh_continuation", "prefix_text": "从前有座山，", "text": "山里有座庙。", "prefix": [9, 31]},
]
# Codec waveforms: (samples, seed); past one attention context (1 s = 24000 samples) of the tiny codec.
WAVES = [(30 * SPF + 123, 101), (17 * SPF, 102)]


# ---------------------------------------------------------------------- shared with the test


def write_tiny_tts(folder: Path) -> Path:
    from moss_model.tiny import write_tiny_model

    return write_tiny_model(Path(folder), seed=TTS_SEED, text_vocab=TEXT_VOCAB)


def tiny_codec():
    from moss_model.codec import tiny_codec_config
    from moss_model.codec.tiny import random_codec

    return random_codec(tiny_codec_config(), seed=CODEC_SEED)


def closing_(text_head: torch.Tensor, gen_slot: int, delay_slot: int) -> None:
    """The `closing` variant of the tiny model: the delay slot gets the generation slot's bias.

    The plain tiny model's generation slot always wins, so a greedy answer never closes its audio
    (the `open` goldens: a fixed number of steps). With equal biases only the random weights
    decide, and with these seeds greedy decoding closes the block after two frames, runs the delay
    tail and <|audio_end|>, and stops with <|im_end|>: the whole state machine, to the end.
    """
    with torch.no_grad():
        text_head[delay_slot, 0] = text_head[gen_slot, 0]


def loud_(model: torch.nn.Module, seed: int = LOUD_SEED) -> None:
    """The `loud` variant of the tiny model, for logits only: every weight redrawn at unit scale
    (vectors 1 + 0.1 N(0,1), matrices N(0,1)/sqrt(fan_in)), in the order of the parameter names.

    The tiny checkpoint's hidden state is nearly all its constant carrier channel (see
    moss_model/tiny.py), so a small change to a backbone weight moves its logits by less than the
    float noise; here every channel carries signal and a change of 1e-3 to one weight shows.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim == 1:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)


def case_codes(frames: int, seed: int) -> torch.Tensor:
    return torch.randint(0, AUDIO_VOCAB, (frames, N_VQ), generator=torch.Generator().manual_seed(seed))


def waveform(samples: int, seed: int) -> np.ndarray:
    """Uniform noise in [-0.3, 0.3) from PCG64's raw stream (bit-stable across numpy versions and machines)."""
    raw = np.random.PCG64(seed).random_raw(samples)
    return (((raw >> np.uint64(11)).astype(np.float64) * 2.0**-53 - 0.5) * 0.6).astype(np.float32)


def text_columns(tokenizer_vocab: int) -> np.ndarray:
    """Every id of the tiny tokenizer (specials included), then seeded columns of the rest and 151662."""
    rest = np.random.Generator(np.random.PCG64(7)).choice(
        np.arange(tokenizer_vocab, TEXT_VOCAB), TEXT_EXTRA_COLUMNS, replace=False
    )
    return np.unique(np.concatenate([np.arange(tokenizer_vocab), rest, [151662]])).astype(np.int64)


def audio_columns() -> np.ndarray:
    chosen = np.random.Generator(np.random.PCG64(8)).choice(AUDIO_VOCAB, AUDIO_COLUMNS - 1, replace=False)
    return np.unique(np.concatenate([chosen, [AUDIO_VOCAB]])).astype(np.int64)


def signs(rows: int, seed: int) -> torch.Tensor:
    """A fixed [rows, PROJECTIONS] matrix of +-1 (PCG64's raw bits, stable everywhere)."""
    bits = np.random.PCG64(seed).random_raw(rows * PROJECTIONS) & np.uint64(1)
    return torch.from_numpy(bits.astype(np.float64) * 2 - 1).reshape(rows, PROJECTIONS)


def projections(logits: torch.Tensor, seed: int) -> torch.Tensor:
    """[..., V] finite logits -> [..., PROJECTIONS]: sums with fixed random signs, in float64.

    Every column counts with weight +-1, so a change of d to any single logit (also to one
    outside the recorded columns) moves a projection by exactly d."""
    return logits.double() @ signs(logits.shape[-1], seed)


def projection_tolerance(tol: dict, columns: int) -> dict:
    """Independent per-logit float noise adds up like sqrt(columns) in a projection."""
    return {"rtol": 0.0, "atol": tol["atol"] * columns**0.5}


def logit_positions(ids: np.ndarray, audio_start_id: int) -> list[int]:
    """The first position, one inside the last audio block of the prompt (or the middle), and the last."""
    length = len(ids)
    starts = np.flatnonzero(ids[:, 0] == audio_start_id)
    middle = int(starts[-1]) + 3 if len(starts) else length // 2
    return sorted({0, min(middle, length - 2), length - 1})


def fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        digest.update(name.encode() + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def tts_fingerprint(folder: Path, tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    return {
        "weights": fingerprint(tensors),
        "tokenizer": hashlib.sha256((Path(folder) / "tokenizer.json").read_bytes()).hexdigest()[:16],
    }


def tokenizer_vocab(folder: Path) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(folder) / "tokenizer.json")).get_vocab_size()


# ---------------------------------------------------------------------- recording (upstream)


def git_commit(path: Path) -> str:
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def git_dirty(path: Path) -> bool:
    return bool(subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip())


def upstream_tts(root: Path, folder: Path):
    """Upstream's model and processor on the tiny checkpoint (as test_upstream_parity.py builds them)."""
    sys.path.insert(0, str(root))
    from moss_tts_delay import modeling_moss_tts
    from moss_tts_delay.configuration_moss_tts import MossTTSDelayConfig
    from moss_tts_delay.modeling_moss_tts import MossTTSDelayModel
    from moss_tts_delay.processing_moss_tts import MossTTSDelayProcessor
    from transformers import AutoTokenizer

    from moss_model.loading import load_tts

    ours = load_tts(folder)  # only to read the checkpoint's tensors under the released key names
    data = ours.config.to_dict()
    data.pop("model_type"), data.pop("architectures")
    for key in [k for k in data if k not in MossTTSDelayConfig.__init__.__code__.co_varnames]:
        data.pop(key)
    config = MossTTSDelayConfig(**data)
    config._attn_implementation = "sdpa"
    config.language_config._attn_implementation = "sdpa"

    # Upstream's output class rejects the `cache` field that transformers 5 returns; a plain
    # record with the two fields its generate() reads (as in test_upstream_parity.py).
    def output(**fields):
        fields.setdefault("past_key_values", fields.pop("cache", None))
        return SimpleNamespace(**fields)

    modeling_moss_tts.MossTTSDelayOutputWithPast = output
    model = MossTTSDelayModel(config).eval()
    tensors = {k: v.detach().clone() for k, v in ours.model.checkpoint_tensors().items()}
    model.load_state_dict(tensors, strict=True)
    processor = MossTTSDelayProcessor(tokenizer=AutoTokenizer.from_pretrained(str(folder)), model_config=config)
    loud_(ours.model)
    loud_tensors = {k: v.detach().clone() for k, v in ours.model.checkpoint_tensors().items()}
    return model, processor, config, tensors, loud_tensors


def messages(processor, case: dict, codes: dict[str, torch.Tensor]) -> tuple[str, list[dict]]:
    reference = [codes[f"{case['name']}/reference{i}"] for i in range(len(case.get("reference", [])))] or None
    text = case.get("prefix_text", "") + case["text"]
    user = processor.build_user_message(text=text, reference=reference, tokens=case.get("tokens"),
                                        language=case.get("language"))
    if "prefix" not in case:
        return "generation", [user]
    return "continuation", [user, processor.build_assistant_message(audio_codes_list=[codes[f"{case['name']}/prefix"]])]


def greedy_margins(model, config, prompt: torch.Tensor, generated: torch.Tensor) -> dict[str, float]:
    """The smallest gap between the chosen and the next-best logit over the greedy choices of an
    answer (teacher-forced), text and audio apart: how far the goldens are from a float-noise tie."""
    full = torch.cat([prompt, generated])[None]
    with torch.no_grad():
        logits = model(input_ids=full, attention_mask=torch.ones(full.shape[:2], dtype=torch.bool)).logits
    p0 = len(prompt) - 1
    gen, delay = config.audio_assistant_gen_slot_token_id, config.audio_assistant_delay_slot_token_id
    forbidden_outside = [config.pad_token_id, gen, delay, config.audio_end_token_id]
    text_gaps, audio_gaps = [], []
    previous = prompt[-1, 0].item()
    for j, row in enumerate(generated):
        text = logits[0][0, p0 + j].float()
        token = row[0].item()
        if token in (gen, delay) and previous in (gen, config.audio_start_token_id):
            text_gaps.append(abs(float(text[gen] - text[delay])))  # a choice, not the forced delay tail
        elif token not in (gen, delay, config.audio_end_token_id):
            allowed = text.clone()
            allowed[forbidden_outside] = float("-inf")
            top = allowed.topk(2).values
            text_gaps.append(float(top[0] - top[1]))
        for k in range(N_VQ):
            if row[1 + k].item() != AUDIO_VOCAB:
                top = logits[k + 1][0, p0 + j, :AUDIO_VOCAB].float().topk(2).values
                audio_gaps.append(float(top[0] - top[1]))
        previous = token
    return {"text": min(text_gaps, default=float("inf")), "audio": min(audio_gaps, default=float("inf"))}


def record_tts(root: Path, work: Path) -> tuple[dict[str, np.ndarray], dict]:
    folder = write_tiny_tts(work / "tiny")
    model, processor, config, tensors, loud_tensors = upstream_tts(root, folder)
    vocab = tokenizer_vocab(folder)
    text_cols, audio_cols = text_columns(vocab), audio_columns()
    out: dict[str, np.ndarray] = {"text_columns": text_cols, "audio_columns": audio_cols}
    codes: dict[str, torch.Tensor] = {}
    for case in CASES:
        for i, (frames, seed) in enumerate(case.get("reference", [])):
            codes[f"{case['name']}/reference{i}"] = case_codes(frames, seed)
        if "prefix" in case:
            codes[f"{case['name']}/prefix"] = case_codes(*case["prefix"])
    out.update({f"{k}": v.numpy().astype(np.int16) for k, v in codes.items()})

    loud = copy.deepcopy(model)
    loud.load_state_dict(loud_tensors, strict=True)
    closing = copy.deepcopy(model)
    closing_(closing.lm_heads[0].weight, config.audio_assistant_gen_slot_token_id,
             config.audio_assistant_delay_slot_token_id)
    conversations, modes, margins = [], [], {}
    for case in CASES:
        name = case["name"]
        mode, conversation = messages(processor, case, codes)
        conversations.append(conversation)
        modes.append(mode)
        batch = processor([conversation], mode=mode)
        ids = batch["input_ids"][0]
        assert bool(batch["attention_mask"].all())
        out[f"{name}/input_ids"] = ids.numpy().astype(np.int32)
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loud_logits = loud(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        positions = logit_positions(ids.numpy(), config.audio_start_token_id)
        out[f"{name}/logit_positions"] = np.array(positions, dtype=np.int64)
        for variant, variant_logits in (("tiny", logits), ("loud", loud_logits)):
            text = variant_logits[0][0, positions].float()  # P, V
            audio = torch.stack([variant_logits[k + 1][0, positions] for k in range(N_VQ)], dim=1).float()  # P, n_vq, 1025
            out[f"{name}/{variant}/text_logits"] = text[:, text_cols].numpy()
            out[f"{name}/{variant}/text_logsumexp"] = torch.logsumexp(text, -1).numpy()
            out[f"{name}/{variant}/audio_logits"] = audio[:, :, audio_cols].numpy()
            out[f"{name}/{variant}/audio_logsumexp"] = torch.logsumexp(audio[..., :AUDIO_VOCAB], -1).numpy()
            out[f"{name}/{variant}/text_projections"] = projections(text, seed=11).numpy()
            out[f"{name}/{variant}/audio_projections"] = projections(audio[..., :AUDIO_VOCAB], seed=12).numpy()

        for variant, variant_model, steps in (("open", model, OPEN_STEPS), ("closing", closing, CLOSING_MAX_STEPS)):
            with torch.no_grad():
                [(start_length, rows)] = variant_model.generate(
                    batch["input_ids"], batch["attention_mask"], max_new_tokens=steps, text_temperature=0,
                    audio_temperature=0)
            generated = rows[int(start_length):]
            prefix_frames = case["prefix"][0] if "prefix" in case else 0
            expected_start = 1 + prefix_frames if prefix_frames else 0  # <|audio_start|> and the prefix rows
            assert int(start_length) == expected_start, (name, int(start_length))
            ended = bool(generated[-1, 0] == config.im_end_token_id)
            if variant == "open":
                assert len(generated) == steps and not ended, f"{name}: the open generation stopped early"
            else:
                assert ended, f"{name}: upstream did not stop within {steps} steps; raise CLOSING_MAX_STEPS"
            out[f"{name}/{variant}/generated_rows"] = generated.numpy().astype(np.int16)
            margins[f"{name}/{variant}"] = greedy_margins(variant_model, config, ids, generated)
            if variant == "closing":
                # Upstream's own split of the answer into audio runs (its codec step replaced by the
                # identity); the first run starts with the continuation prefix, which ours leaves out.
                processor.decode_audio_codes = lambda codes_list: codes_list
                runs = processor._parse_audio_codes(0, rows[:, 1:])
                out[f"{name}/{variant}/frames"] = runs[0][prefix_frames:].numpy().astype(np.int16)
                out[f"{name}/{variant}/audio_runs"] = np.array(len(runs), dtype=np.int64)

    # All cases as one left-padded batch (generation and continuation prompts mixed: the
    # processor builds each conversation alone, so one call per mode, then its own _pad).
    per_case = [processor([c], mode=m)["input_ids"][0] for c, m in zip(conversations, modes)]
    padded = processor._pad(per_case)
    out["batch/input_ids"] = padded["input_ids"].numpy().astype(np.int32)
    out["batch/attention_mask"] = padded["attention_mask"].numpy()

    meta = {
        "tiny_checkpoint": {"seed": TTS_SEED, "text_vocab": TEXT_VOCAB, "tokenizer_vocab": vocab,
                            "fingerprint": tts_fingerprint(folder, tensors),
                            "loud_fingerprint": fingerprint(loud_tensors)},
        "open_steps": OPEN_STEPS,
        "closing_max_steps": CLOSING_MAX_STEPS,
        "greedy_margins": margins,
    }
    return out, meta


def upstream_codec_classes(root: Path):
    name = "moss_audio_tokenizer_upstream"
    spec = importlib.util.spec_from_file_location(name, root / "__init__.py", submodule_search_locations=[str(root)])
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    modeling = importlib.import_module(f"{name}.modeling_moss_audio_tokenizer")
    configuration = importlib.import_module(f"{name}.configuration_moss_audio_tokenizer")
    return modeling.MossAudioTokenizerModel, configuration.MossAudioTokenizerConfig


def wave_slices(length: int) -> list[tuple[int, int]]:
    """Start, end of the recorded slices of a decoded row: its start, around the 1 s context, its end."""
    return [(0, 4800), (22800, 25200), (length - 2400, length)]


def envelope(audio: np.ndarray) -> np.ndarray:
    blocks = len(audio) // ENVELOPE_BLOCK
    return np.sqrt((audio[: blocks * ENVELOPE_BLOCK].astype(np.float64).reshape(blocks, -1) ** 2).mean(1)).astype(np.float32)


def record_codec(root: Path) -> tuple[dict[str, np.ndarray], dict]:
    Model, Config = upstream_codec_classes(root)
    ours = tiny_codec()
    theirs = Model(Config(**ours.config.to_dict())).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    wavs = [torch.from_numpy(waveform(n, seed)) for n, seed in WAVES]
    with torch.no_grad():
        encoded = theirs.batch_encode(wavs)
    code_lengths = encoded.audio_codes_lengths.tolist()
    codes = encoded.audio_codes.permute(1, 0, 2)  # B, K, T
    out: dict[str, np.ndarray] = {
        "code_lengths": np.array(code_lengths, dtype=np.int64),
        "codes": codes.numpy().astype(np.int16),
    }
    with torch.no_grad():
        decoded = theirs.batch_decode([codes[i, :, :n] for i, n in enumerate(code_lengths)])
    out["audio_lengths"] = decoded.audio_lengths.numpy().astype(np.int64)
    for i, n in enumerate(decoded.audio_lengths.tolist()):
        audio = decoded.audio[i, 0, :n].float().numpy()
        for start, end in wave_slices(n):
            out[f"audio{i}/{start}"] = audio[start:end]
        out[f"audio{i}/envelope"] = envelope(audio)
    meta = {"seed": CODEC_SEED, "waves": WAVES, "fingerprint": fingerprint(ours.state_dict())}
    return out, meta


def describe(arrays: dict[str, np.ndarray]) -> dict:
    return {k: f"{v.dtype}{list(v.shape)}" for k, v in arrays.items()}


def main() -> None:
    import tempfile

    import transformers

    roots = {}
    for var, marker in (("MOSS_TTS_UPSTREAM", "moss_tts_delay"),
                        ("MOSS_AUDIO_TOKENIZER_UPSTREAM", "modeling_moss_audio_tokenizer.py")):
        value = os.environ.get(var)
        if not value or not (Path(value) / marker).exists():
            raise SystemExit(f"set {var} to a git checkout holding {marker} (see this script's docstring)")
        roots[var] = Path(value).resolve()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as work:
        tts, tts_meta = record_tts(roots["MOSS_TTS_UPSTREAM"], Path(work))
    codec, codec_meta = record_codec(roots["MOSS_AUDIO_TOKENIZER_UPSTREAM"])
    sources = {}
    for var, repo in (("MOSS_TTS_UPSTREAM", "OpenMOSS/MOSS-TTS"),
                      ("MOSS_AUDIO_TOKENIZER_UPSTREAM", "OpenMOSS/MOSS-Audio-Tokenizer")):
        root = roots[var]
        sources[repo] = {"commit": git_commit(root), "local_changes": git_dirty(root)}
    meta = {
        "recorded_from": sources,
        "how": "upstream's classes imported from checkouts of these commits and run on the tiny random-weight "
               "checkpoints; regenerate with tests/moss_model/data/record_parity_goldens.py (see its docstring)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__,
                     "python": platform.python_version(), "machine": platform.machine()},
        "tolerance": {"logits": LOGIT_TOLERANCE, "waveform": WAVE_TOLERANCE,
                      "exact": "input ids, attention masks, generated rows, frames, codes, lengths"},
        "cases": CASES,
        "known_differences": [
            "closing generation of the continuation cases: upstream's generate() forbids token 151662 (the "
            "released delay-slot id, hard-coded) at step 0, ours the config's delay slot (602 here); upstream "
            "closes a continuation at step 0 on this checkpoint, ours emits one generation slot first"
        ],
        "tts": tts_meta,
        "codec": codec_meta,
        "arrays": {TTS_FILE.name: describe(tts), CODEC_FILE.name: describe(codec)},
    }
    np.savez_compressed(TTS_FILE, **tts)
    np.savez_compressed(CODEC_FILE, **codec)
    META_FILE.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for file in (TTS_FILE, CODEC_FILE, META_FILE):
        print(f"{file}: {file.stat().st_size} bytes")


if __name__ == "__main__":
    main()
