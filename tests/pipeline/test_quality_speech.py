"""Quality measures on real speech (../shared/data/voices) and on noise.

Measured here (Resemblyzer cosine, 24 kHz input): halves of one recording 0.76-0.89, halves of
different recordings 0.30-0.65; noise (Gaussian, uniform, the tiny random model's codec output)
0.31-0.59 against every reference in 3 s segments (up to 0.61 in 1-2 s ones; the default floor is
0.65). PocketSphinx hears the English reference as "but i really
can't complain about not having a normal college experience eu": WER 2/14 = 0.143 against its
transcript in transcripts.tsv.
"""

from __future__ import annotations

import csv
import importlib.util
import os

import numpy as np
import pytest

from pipeline.quality import (FLAG, OK, REGENERATE, PocketSphinxASR, QualityMeasurer, QualityOptions, RunSimilarity,
                              SpeakerEncoder, cosine_similarity, decide, word_error_rate)
from pipeline.quality.decisions import HIGH_WER, SIMILARITY_FLOOR

RATE = 24_000
RECORDINGS = ("reference_en.m4a", "reference_en_1.mp3", "reference_02_s1.wav", "reference_zh.wav")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the LSTM's many small products lose 10x and more to a second thread
    when the cores are shared (as on the test machines)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def voices(shared_data) -> dict[str, np.ndarray]:
    from moss_model.audio_io import load_audio

    folder = shared_data / "voices"
    missing = [name for name in RECORDINGS if not (folder / name).is_file()]
    if missing:
        pytest.skip(f"voice recordings missing from {folder}: {missing}")
    return {name: load_audio(folder / name, RATE).numpy() for name in RECORDINGS}


@pytest.fixture(scope="module")
def transcripts(shared_data) -> dict[str, str]:
    with open(shared_data / "voices" / "transcripts.tsv", encoding="utf-8", newline="") as file:
        return {row["file"]: row["transcript"] for row in csv.DictReader(file, delimiter="\t")}


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


@pytest.fixture(scope="module")
def pocketsphinx() -> PocketSphinxASR:
    return PocketSphinxASR()


def noise_segments() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [0.1 * rng.standard_normal(3 * RATE).astype(np.float32),
            0.02 * (rng.random(3 * RATE).astype(np.float32) - 0.5)]


def test_halves_of_one_speaker_are_more_alike_than_any_two_speakers(voices, encoder):
    halves = [(name, part) for name, wave in voices.items() for part in (wave[: len(wave) // 2], wave[len(wave) // 2:])]
    embeddings = encoder.embed([part for _, part in halves], RATE)
    assert embeddings.shape == (len(halves), 256)
    similarity = cosine_similarity(embeddings[:, None], embeddings[None])
    same = [similarity[i, i + 1] for i in range(0, len(halves), 2)]
    different = [similarity[i, j] for i in range(len(halves)) for j in range(len(halves))
                 if halves[i][0] != halves[j][0]]
    print(f"same speaker {np.round(same, 3)}; different speakers {min(different):.3f}..{max(different):.3f}")
    assert min(same) > max(different) + 0.05
    assert min(same) > QualityOptions().min_similarity > max(different) - 0.01


def test_a_segments_embedding_does_not_depend_on_its_batch(voices, encoder):
    waves = [voices["reference_en.m4a"], voices["reference_zh.wav"][: RATE // 2], np.zeros(RATE, np.float32)]
    together = encoder.embed(waves, RATE)
    for wave, embedding in zip(waves, together):
        np.testing.assert_allclose(encoder.embed([wave], RATE)[0], embedding, atol=1e-5)
    assert not together[2].any()  # silence has no voice: a zero vector, similarity 0 (not NaN)
    assert cosine_similarity(together[2], together[0]) == 0.0
    assert encoder.embed([], RATE).shape == (0, 256)


@pytest.mark.slow  # imports librosa (numba): ~15 s here
def test_the_encoder_is_resemblyzers_embed_utterance(voices, encoder):
    """Our batched encoder reads Resemblyzer's weights (a float16 safetensors copy) and computes its
    mel front end with torchaudio; the package's own path gives the same embedding."""
    if any(importlib.util.find_spec(name) is None for name in ("resemblyzer", "webrtcvad", "librosa")):
        pytest.skip("the package to compare with: pip install --no-deps resemblyzer && pip install webrtcvad-wheels librosa")
    from resemblyzer import VoiceEncoder, audio

    theirs = VoiceEncoder("cpu", verbose=False)
    for name in ("reference_en.m4a", "reference_zh.wav"):
        wave = audio.librosa.resample(voices[name], orig_sr=RATE, target_sr=16_000)
        wave = audio.normalize_volume(wave, -30, increase_only=True).astype(np.float32)
        expected = theirs.embed_utterance(wave)
        assert cosine_similarity(expected, encoder.embed([voices[name]], RATE)[0]) > 0.999


def test_pocketsphinx_hears_the_english_reference(voices, transcripts, pocketsphinx):
    transcript = transcripts["reference_en.m4a"]
    [heard] = pocketsphinx.transcribe([voices["reference_en.m4a"]], RATE, "en")
    wer = word_error_rate(transcript, heard)
    print(f"reference: {transcript!r}\nheard:     {heard!r}\nWER {wer:.3f}")
    assert wer <= 0.25  # 2/14 = 0.143 with pocketsphinx 5.1.1
    assert pocketsphinx.transcribe([voices["reference_zh.wav"]], RATE, "zh") is None  # not measured
    assert pocketsphinx.transcribe([voices["reference_en.m4a"][:RATE]], RATE, "en-US") is not None


def test_noise_scores_low_and_is_regenerated_then_flagged(voices, transcripts, encoder, pocketsphinx, tiny_checkpoints):
    """Random audio and what the tiny random-weight model sounds like (its codec decoding random
    codes) score far below real speech against every reference, and the decision function acts."""
    from moss_model.codec import load_codec
    from pipeline.narration.segment_audio import decode_segments

    codec = load_codec(tiny_checkpoints[1])
    codes = [np.random.default_rng(seed).integers(0, 1024, size=(38, 32)).astype(np.int16) for seed in range(2)]
    tiny = decode_segments(codec, codes)  # 3 s each at 24 kHz
    noises = noise_segments() + tiny
    options = QualityOptions()
    measurer = QualityMeasurer(options, encoder=encoder, asr=pocketsphinx)
    texts = [transcripts["reference_en.m4a"]] * len(noises)
    english = measurer.measure(noises, RATE, texts, ["en"] * len(noises))
    chinese = measurer.measure(noises, RATE, texts, ["zh"] * len(noises))
    assert all(m.wer is None and m.transcript is None for m in chinese)  # not measured, no error
    for m in english:  # PocketSphinx hears (almost) nothing in noise
        assert m.wer > options.max_wer
    for name, reference in voices.items():
        embedding = measurer.reference_embedding(reference, RATE)
        for m in english:
            values = m.with_run(RunSimilarity(embedding), 0)
            print(f"{name}: noise similarity {values.similarity_to_reference:.3f}, WER {values.wer:.2f}")
            assert values.similarity_to_reference < options.min_similarity
            first, last = decide(values, None, options, attempt=1), decide(values, None, options, attempt=3)
            assert first.action == REGENERATE and first.reanchor and first.flags == (SIMILARITY_FLOOR, HIGH_WER)
            assert last.action == FLAG and last.flags == first.flags


def test_real_speech_of_the_reference_speaker_passes(voices, transcripts, encoder, pocketsphinx):
    """The English reference's second half as a segment of a run anchored on its first half."""
    wave = voices["reference_en.m4a"]
    options = QualityOptions()
    measurer = QualityMeasurer(options, encoder=encoder, asr=pocketsphinx)
    state = RunSimilarity(measurer.reference_embedding(wave[: len(wave) // 2], RATE))
    [whole, half] = measurer.measure([wave, wave[len(wave) // 2:]], RATE, [transcripts["reference_en.m4a"], ""], ["en", "en"])
    assert whole.wer == pytest.approx(word_error_rate(transcripts["reference_en.m4a"], whole.transcript))
    assert half.wer is None and half.words == 0  # no text, no WER
    values = half.with_run(state, 0)
    assert values.similarity_to_reference > options.min_similarity
    assert decide(values, None, options).action == OK
    state.accept(0, half.embedding)
    assert whole.with_run(state, 1).similarity_to_run > 0.85


@pytest.mark.skipif(not os.environ.get("MOSS_WHISPER_PATH"), reason="set MOSS_WHISPER_PATH to a local Whisper model folder (safetensors) to test WhisperASR")
def test_whisper_from_a_local_folder_hears_the_english_reference(voices, transcripts):
    from pipeline.quality import WhisperASR

    asr = WhisperASR(os.environ["MOSS_WHISPER_PATH"])
    [heard] = asr.transcribe([voices["reference_en.m4a"]], RATE, "en")
    wer = word_error_rate(transcripts["reference_en.m4a"], heard)
    print(f"whisper heard {heard!r}: WER {wer:.3f}")
    assert wer <= 0.15


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet (what a Whisper tokenizer's vocab.json is written in)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes)))


def write_tiny_whisper(folder):
    """A random-weight Whisper in the layout of a released checkpoint (byte-level tokenizer, no
    merges; English and Chinese language tokens), saved as safetensors."""
    import json

    import torch
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)

    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(bytes_to_unicode().values())}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    end = "<|endoftext|>"
    tokenizer = WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token=end,
                                 bos_token=end, eos_token=end, pad_token=end)
    specials = ["<|startoftranscript|>", "<|en|>", "<|zh|>", "<|translate|>", "<|transcribe|>", "<|notimestamps|>"]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in [end, *specials]}
    config = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                           max_source_positions=1500, max_target_positions=32, pad_token_id=ids[end],
                           bos_token_id=ids[end], eos_token_id=ids[end],
                           decoder_start_token_id=ids["<|startoftranscript|>"])
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids[end], pad_token_id=ids[end],
        bos_token_id=ids[end], is_multilingual=True, no_timestamps_token_id=ids["<|notimestamps|>"],
        lang_to_id={"<|en|>": ids["<|en|>"], "<|zh|>": ids["<|zh|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]})
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(), tokenizer).save_pretrained(folder)
    return folder


def test_whisper_loads_a_local_folder_and_transcribes_batches(tmp_path):
    """The code path with a random-weight model: its transcripts are noise, but one per audio."""
    from pipeline.quality import WhisperASR

    folder = write_tiny_whisper(tmp_path / "tiny-whisper")
    asr = WhisperASR(folder, max_batch=2)
    assert asr.multilingual and asr.languages == {"en", "zh"} and asr.max_new_tokens == 27
    rng = np.random.default_rng(0)
    audios = [0.1 * rng.standard_normal(RATE // 2).astype(np.float32) for _ in range(3)]
    heard = asr.transcribe(audios, RATE, "en-US")
    assert isinstance(heard, list) and len(heard) == 3 and all(isinstance(t, str) for t in heard)
    assert asr.transcribe(audios[:1], RATE, "de") is None  # a language it does not hear: not measured


def test_whisper_never_downloads(tmp_path):
    from pipeline.quality import WhisperASR

    with pytest.raises(FileNotFoundError, match="does not exist"):
        WhisperASR(tmp_path / "openai/whisper-tiny")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        WhisperASR(tmp_path / "model")
