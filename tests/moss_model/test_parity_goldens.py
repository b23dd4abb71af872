"""Parity with the upstream reference on every run, from goldens recorded once from upstream.

tests/moss_model/data/record_parity_goldens.py ran upstream's own code (OpenMOSS/MOSS-TTS
moss_tts_delay/, OpenMOSS/MOSS-Audio-Tokenizer; commits in data/parity_meta.json) on the tiny
random-weight checkpoints and wrote what it produced into data/parity_*.npz. Here the same tiny
checkpoints are built and OUR implementation must reproduce it: input ids, padded batches,
greedy rows and frames, codec codes and lengths exactly; logits and waveforms within the
tolerance recorded in the metadata. No upstream checkout is needed (test_upstream_parity.py and
test_codec_upstream.py compare live with one, and are how the goldens are regenerated).

If the tiny checkpoints change (moss_model/tiny.py, moss_model/codec/tiny.py), the goldens no
longer apply: regenerate them with the command in record_parity_goldens.py's docstring.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from moss_model.generation import Generator
from moss_model.loading import load_tts
from moss_model.processor import MossTTSProcessor, SpeechRequest
from moss_model.sampling import DecodingParams

DATA = Path(__file__).parent / "data"


def _recorder():
    """The recorder module (it imports upstream only when recording), for the shared inputs."""
    name = "record_parity_goldens"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DATA / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


R = _recorder()
META = json.loads(R.META_FILE.read_text(encoding="utf-8"))
with np.load(R.TTS_FILE, allow_pickle=False) as _f:
    TTS = dict(_f)
with np.load(R.CODEC_FILE, allow_pickle=False) as _f:
    CODEC = dict(_f)
CASES = META["cases"]
LOGITS_TOL = META["tolerance"]["logits"]
WAVE_TOL = META["tolerance"]["waveform"]
UPSTREAM = ", ".join(f"{repo}@{info['commit'][:12]}" for repo, info in META["recorded_from"].items())


# ---------------------------------------------------------------------- comparisons


def assert_exact(what: str, got: np.ndarray, expected: np.ndarray, hint: str = "") -> None:
    """Equal shapes and values; on failure name the first differing index and both values."""
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        raise AssertionError(f"{what}: shape {got.shape} != upstream's {expected.shape} ({UPSTREAM}){hint}")
    differ = np.argwhere(got != expected)
    if len(differ):
        at = tuple(int(i) for i in differ[0])
        raise AssertionError(
            f"{what}: {len(differ)} of {got.size} values differ from upstream ({UPSTREAM}); first at index {at}: "
            f"ours {got[at]} != upstream {expected[at]}{hint}"
        )


def assert_near(what: str, got: np.ndarray, expected: np.ndarray, tol: dict) -> None:
    """|got - expected| <= atol + rtol |expected| everywhere (infinities must match)."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        raise AssertionError(f"{what}: shape {got.shape} != upstream's {expected.shape} ({UPSTREAM})")
    finite = np.isfinite(expected)
    if not np.array_equal(np.isfinite(got), finite) or not np.array_equal(got[~finite], expected[~finite]):
        raise AssertionError(f"{what}: the infinite entries differ from upstream's ({UPSTREAM})")
    diff = np.zeros(got.shape)
    diff[finite] = np.abs(got[finite] - expected[finite])
    bound = tol["atol"] + tol["rtol"] * np.abs(np.where(finite, expected, 0.0))
    bad = np.argwhere(diff > bound)
    if len(bad):
        at = tuple(int(i) for i in bad[0])
        worst = np.unravel_index(int(np.argmax(diff - bound)), diff.shape)
        raise AssertionError(
            f"{what}: {len(bad)} of {got.size} values outside atol={tol['atol']} rtol={tol['rtol']} of upstream "
            f"({UPSTREAM}); first at index {at}: ours {got[at]:.7g} vs upstream {expected[at]:.7g}; "
            f"largest difference {diff[worst]:.3g} at {tuple(int(i) for i in worst)}"
        )


# ---------------------------------------------------------------------- our side


@pytest.fixture(scope="module")
def tts(tmp_path_factory):
    return load_tts(R.write_tiny_tts(tmp_path_factory.mktemp("parity-goldens") / "tiny"))


@pytest.fixture(scope="module")
def closing(tts):
    """The tiny model with the recorder's `closing` slot biases: greedy answers end."""
    c = tts.config
    model = copy.deepcopy(tts.model)
    R.closing_(model.text_head, c.audio_assistant_gen_slot_token_id, c.audio_assistant_delay_slot_token_id)
    return Generator(model, tts.processor)


@pytest.fixture(scope="module")
def loud(tts):
    """The tiny model with every weight redrawn at unit scale (the recorder's `loud` variant)."""
    model = copy.deepcopy(tts.model)
    R.loud_(model)
    return model


@pytest.fixture(scope="module")
def codec():
    return R.tiny_codec()


def request(case: dict) -> SpeechRequest:
    name = case["name"]
    reference = [torch.from_numpy(TTS[f"{name}/reference{i}"]).long() for i in range(len(case.get("reference", [])))]
    prefix = torch.from_numpy(TTS[f"{name}/prefix"]).long() if "prefix" in case else None
    return SpeechRequest(text=case["text"], prefix_text=case.get("prefix_text"), prefix_codes=prefix,
                         reference=reference or None, tokens=case.get("tokens"), language=case.get("language"))


def compare_input_ids(processor: MossTTSProcessor, case: dict) -> None:
    ids = processor.build_prompt(request(case)).ids
    assert_exact(f"{case['name']}: input ids", ids.numpy(), TTS[f"{case['name']}/input_ids"])


def compare_logits(model, case: dict, variant: str) -> None:
    name = case["name"]
    ids = torch.from_numpy(TTS[f"{name}/input_ids"]).long()[None]
    positions = torch.from_numpy(TTS[f"{name}/logit_positions"])
    with torch.no_grad():
        logits = model(ids, torch.ones(ids.shape[:2], dtype=torch.bool))
    text = logits.text[0, positions].float()  # P, V
    audio = logits.audio[0, positions].float()  # P, n_vq, 1025
    text_columns, audio_columns = torch.from_numpy(TTS["text_columns"]), torch.from_numpy(TTS["audio_columns"])
    where = f"{name} ({variant} weights): positions {positions.tolist()}"
    assert_near(f"{where}: text logits", text[:, text_columns].numpy(), TTS[f"{name}/{variant}/text_logits"], LOGITS_TOL)
    assert_near(f"{where}: text logsumexp", torch.logsumexp(text, -1).numpy(), TTS[f"{name}/{variant}/text_logsumexp"],
                LOGITS_TOL)
    assert_near(f"{where}: audio logits", audio[:, :, audio_columns].numpy(), TTS[f"{name}/{variant}/audio_logits"],
                LOGITS_TOL)
    assert_near(f"{where}: audio logsumexp", torch.logsumexp(audio[..., : R.AUDIO_VOCAB], -1).numpy(),
                TTS[f"{name}/{variant}/audio_logsumexp"], LOGITS_TOL)
    assert_near(f"{where}: text projections", R.projections(text, seed=11).numpy(),
                TTS[f"{name}/{variant}/text_projections"], R.projection_tolerance(LOGITS_TOL, text.shape[-1]))
    assert_near(f"{where}: audio projections", R.projections(audio[..., : R.AUDIO_VOCAB], seed=12).numpy(),
                TTS[f"{name}/{variant}/audio_projections"], R.projection_tolerance(LOGITS_TOL, R.AUDIO_VOCAB))


def margin_hint(name: str, variant: str) -> str:
    margins = META["tts"]["greedy_margins"][f"{name}/{variant}"]
    return (f" (upstream's smallest greedy margins on this answer: text {margins['text']:.2g}, audio "
            f"{margins['audio']:.2g}; a difference there far below {LOGITS_TOL['atol']} would be a near-tie)")


def generate(generator: Generator, processor: MossTTSProcessor, variant: str, cases: list[dict]) -> list:
    """The cases as one batch through our generator (the engine); upstream ran them one by one."""
    prompts = [processor.build_prompt(request(case)) for case in cases]
    # open: upstream ran a fixed number of steps, and our frame limit stays out of the way.
    limit = META["tts"]["open_steps"] + 10 if variant == "open" else META["tts"]["closing_max_steps"]
    return generator.generate(prompts, [0] * len(prompts), DecodingParams.greedy(), max_new_frames=limit)


def compare_generation(case: dict, result, variant: str) -> None:
    name = case["name"]
    expected = TTS[f"{name}/{variant}/generated_rows"]
    rows = result.rows.numpy()
    if variant == "open":
        rows = rows[: len(expected)]
    assert_exact(f"{name}: greedy rows ({variant})", rows, expected, margin_hint(name, variant))
    if variant == "closing":
        assert result.finished and not result.hit_frame_limit, name
        assert_exact(f"{name}: greedy frames ({variant})", result.frames.numpy(), TTS[f"{name}/{variant}/frames"],
                     margin_hint(name, variant))
        assert len(result.audio_runs) == int(TTS[f"{name}/{variant}/audio_runs"]), name


def padded_waveforms() -> tuple[torch.Tensor, torch.Tensor]:
    waves = [torch.from_numpy(R.waveform(n, seed)) for n, seed in META["codec"]["waves"]]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    return batch, lengths


def compare_encode(codec) -> None:
    batch, lengths = padded_waveforms()
    codes, code_lengths = codec.encode(batch, lengths)
    assert_exact("codec: code lengths", code_lengths.numpy(), CODEC["code_lengths"])
    for i, n in enumerate(CODEC["code_lengths"].tolist()):
        assert_exact(f"codec: codes of waveform {i}", codes[i, :, :n].numpy(), CODEC["codes"][i, :, :n])


def compare_decode(codec, chunk_frames: int | None) -> None:
    codes = torch.from_numpy(CODEC["codes"]).long()
    lengths = torch.from_numpy(CODEC["code_lengths"])
    audio, audio_lengths = codec.decode(codes, lengths, chunk_frames=chunk_frames)
    assert_exact("codec: decoded lengths", audio_lengths.numpy(), CODEC["audio_lengths"])
    for i, n in enumerate(CODEC["audio_lengths"].tolist()):
        wave = audio[i, :n].float().numpy()
        for start, end in R.wave_slices(n):
            assert_near(f"codec: waveform {i} [{start}:{end}] (chunk_frames={chunk_frames})", wave[start:end],
                        CODEC[f"audio{i}/{start}"], WAVE_TOL)
        assert_near(f"codec: waveform {i} RMS envelope (chunk_frames={chunk_frames})", R.envelope(wave),
                    CODEC[f"audio{i}/envelope"], WAVE_TOL)


# ---------------------------------------------------------------------- the checks


def test_goldens_are_small_and_pickle_free():
    total = sum(f.stat().st_size for f in (R.TTS_FILE, R.CODEC_FILE, R.META_FILE))
    assert total < 1 << 20
    assert set(META["arrays"][R.TTS_FILE.name]) == set(TTS)
    assert set(META["arrays"][R.CODEC_FILE.name]) == set(CODEC)


def test_tiny_checkpoints_are_the_recorded_ones(tts, loud, codec):
    """Goldens hold only for the weights they were recorded on (else regenerate them, see the docstring)."""
    recorded = META["tts"]["tiny_checkpoint"]["fingerprint"]
    assert R.tts_fingerprint(tts.folder, tts.model.checkpoint_tensors()) == recorded, (
        "the tiny delay checkpoint is not the one the goldens were recorded on: regenerate them with "
        "tests/moss_model/data/record_parity_goldens.py"
    )
    assert R.fingerprint(loud.checkpoint_tensors()) == META["tts"]["tiny_checkpoint"]["loud_fingerprint"], (
        "the loud variant of the tiny checkpoint is not the recorded one: regenerate the goldens"
    )
    assert R.fingerprint(codec.state_dict()) == META["codec"]["fingerprint"], (
        "the tiny codec is not the one the goldens were recorded on: regenerate them with "
        "tests/moss_model/data/record_parity_goldens.py"
    )


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_input_ids(tts, case):
    compare_input_ids(tts.processor, case)


def test_padded_batch(tts):
    batch = tts.processor.pad_batch([tts.processor.build_prompt(request(case)) for case in CASES])
    assert_exact("padded batch: input ids", batch.input_ids.numpy(), TTS["batch/input_ids"])
    assert_exact("padded batch: attention mask", batch.attention_mask.numpy(), TTS["batch/attention_mask"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_logits(tts, case):
    compare_logits(tts.model, case, "tiny")


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_logits_of_the_loud_weights(loud, case):
    """Every weight at unit scale: a change anywhere in the backbone or the heads moves these logits."""
    compare_logits(loud, case, "loud")


@pytest.fixture(scope="module")
def open_results(tts):
    return dict(zip([c["name"] for c in CASES], generate(tts.generator, tts.processor, "open", CASES)))


@pytest.fixture(scope="module")
def closing_results(tts, closing):
    return dict(zip([c["name"] for c in CASES], generate(closing, tts.processor, "closing", CASES)))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_greedy_rows_open(open_results, case):
    """The plain tiny model never closes its audio: the first rows of every answer."""
    compare_generation(case, open_results[case["name"]], "open")


# A known difference, kept visible: upstream's generate() forbids the text token 151662 at step 0,
# the released checkpoint's delay-slot id written as a number; we forbid config.audio_assistant_delay_slot_token_id.
# On released checkpoints the two are the same token. On the tiny checkpoint the delay slot is
# another id, so upstream lets a continuation close its audio at step 0 (its `closing` answer starts
# with the delay slot) and ours does not (a generation slot first, then the delay slot: one row more).
# Plain generations are not affected (their step 0 is outside audio); the open goldens cover
# continuation rows.
STEP0_DELAY_SLOT = pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="upstream forbids the literal id 151662 at step 0, ours the config's delay slot (602 on the tiny "
           "checkpoint, 151662 on released ones): upstream closes a continuation at step 0 here, ours cannot",
)


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c["name"], marks=[STEP0_DELAY_SLOT] if "prefix" in c else []) for c in CASES],
)
def test_greedy_rows_and_frames_to_the_end(closing_results, case):
    """Audio closed, the delay tail, <|audio_end|>, <|im_end|>: every row to the stop, and the frames."""
    compare_generation(case, closing_results[case["name"]], "closing")


def test_codec_codes(codec):
    compare_encode(codec)


@pytest.mark.parametrize("chunk_frames", [None, 7])
def test_codec_waveform(codec, chunk_frames):
    compare_decode(codec, chunk_frames)


# ---------------------------------------------------------------------- the checks catch a change
# Each test below perturbs one value on our side with monkeypatch and asserts that the same
# comparison the checks above run fails.


def test_a_perturbed_input_id_is_caught(tts, monkeypatch):
    case = next(c for c in CASES if c["name"] == "en_reference")
    encode = MossTTSProcessor.encode_text

    def one_id_off(self, text):
        ids = encode(self, text)
        if text.startswith("<|im_start|>user"):
            ids[-1] += 1  # one token of the user message
        return ids

    monkeypatch.setattr(MossTTSProcessor, "encode_text", one_id_off)
    with pytest.raises(AssertionError, match=r"en_reference: input ids: 1 of \d+ values differ"):
        compare_input_ids(tts.processor, case)


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded-column", "other-column"])
def test_a_perturbed_logit_is_caught(tts, monkeypatch, recorded):
    """One audio logit moved by 1e-3: in a recorded column the column check fails; in any other
    column the random-sign projections do."""
    case = CASES[0]
    model = tts.model
    forward = type(model).forward
    recorded_columns = set(TTS["audio_columns"].tolist())
    column = int(TTS["audio_columns"][3]) if recorded else min(set(range(R.AUDIO_VOCAB)) - recorded_columns)

    def one_logit_off(self, *args, **kwargs):
        logits = forward(self, *args, **kwargs)
        position = int(TTS[f"{case['name']}/logit_positions"][-1])
        logits.audio[0, position, 5, column] += 1e-3
        return logits

    monkeypatch.setattr(type(model), "forward", one_logit_off)
    check = "audio logits" if recorded else "audio projections"
    with pytest.raises(AssertionError, match=rf"{check}: \d+ of \d+ values outside atol"):
        compare_logits(model, case, "tiny")


def test_a_perturbed_weight_is_caught(loud):
    """Not a monkeypatch: one weight of the loud model moved by 1e-3 (and put back)."""
    weight = loud.language_model.layers[1].mlp.down_proj.weight
    with torch.no_grad():
        weight[7, 11] += 1e-3
    try:
        with pytest.raises(AssertionError, match=r"(text|audio) logits: \d+ of \d+ values outside atol"):
            compare_logits(loud, CASES[1], "loud")
    finally:
        with torch.no_grad():
            weight[7, 11] -= 1e-3


def test_a_perturbed_code_is_caught(codec, monkeypatch):
    encode = type(codec).encode

    def one_code_off(self, *args, **kwargs):
        result = encode(self, *args, **kwargs)
        codes = result.codes.clone()
        codes[1, 17, 3] = (codes[1, 17, 3] + 1) % R.AUDIO_VOCAB  # one code of the second waveform
        return result._replace(codes=codes)

    monkeypatch.setattr(type(codec), "encode", one_code_off)
    with pytest.raises(AssertionError, match=r"codes of waveform 1: 1 of \d+ values differ .* index \(17, 3\)"):
        compare_encode(codec)


def test_a_perturbed_generated_code_is_caught(tts, monkeypatch):
    """One code of the engine's sampled rows changed: the greedy rows check fails."""
    from moss_model import engine as engine_module

    result = engine_module.Engine._result

    def one_code_off(self, prompt, generated, forced_close):
        generated = generated.clone()
        generated[10, 4] = (generated[10, 4] + 1) % R.AUDIO_VOCAB
        return result(self, prompt, generated, forced_close)

    monkeypatch.setattr(engine_module.Engine, "_result", one_code_off)
    generator = Generator(tts.model, tts.processor)  # a fresh engine under the patch
    [result] = generate(generator, tts.processor, "open", CASES[:1])
    with pytest.raises(AssertionError, match=r"greedy rows \(open\): 1 of \d+ values differ .* index \(10, 4\)"):
        compare_generation(CASES[0], result, "open")
