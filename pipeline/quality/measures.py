"""Measuring a batch of finished segments: speaker embeddings and WER, each its own batch.

``QualityMeasurer.measure`` takes segments from any runs at once (what the narrator has decoded
since it last looked) and gives each its embedding and WER; those depend on the segment alone.
The run-dependent part (similarity to the run so far) is ``RunSimilarity``'s, applied in each
run's order by the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipeline.quality.asr import ASR, load_asr
from pipeline.quality.decisions import QualityOptions, SegmentMeasures
from pipeline.quality.similarity import RunSimilarity
from pipeline.quality.speaker import SpeakerEncoder
from pipeline.quality.wer import edit_distance, normalize_words


@dataclass(frozen=True)
class Measured:
    """A segment's measures that depend on it alone."""

    embedding: np.ndarray | None  # [256] unit vector; None when similarity is off
    wer: float | None  # None: off, not heard (language), or no words
    words: int
    transcript: str | None

    def with_run(self, state: RunSimilarity | None, index: int) -> SegmentMeasures:
        """These measures plus the similarities from its run's state (``index``: its place in the run)."""
        similarity = state.measure(index, self.embedding) if state is not None and self.embedding is not None else None
        return SegmentMeasures(
            similarity_to_reference=None if similarity is None else similarity.to_reference,
            similarity_to_run=None if similarity is None else similarity.to_run,
            wer=self.wer, words=self.words, transcript=self.transcript)


def wer_sampled(key: str, fraction: float) -> bool:
    """Whether the segment with this key is transcribed when only ``fraction`` of segments are: a
    hash of the key decides, so a rerun under any schedule measures the same segments."""
    if fraction >= 1.0:
        return True
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") < fraction * 2.0**64


class QualityMeasurer:
    """Holds the speaker encoder and the ASR (each loaded only if its measure is on)."""

    def __init__(self, options: QualityOptions, device: str = "cpu", encoder: SpeakerEncoder | None = None,
                 asr: ASR | None = None) -> None:
        self.options = options
        self.encoder = encoder if encoder is not None or not options.similarity else SpeakerEncoder(device)
        self.asr = asr if asr is not None or not options.wer else load_asr(options.asr, options.asr_path, device)

    def reference_embedding(self, audio: np.ndarray | None, sample_rate: int) -> np.ndarray | None:
        """The voice reference's embedding (None without a reference or with similarity off)."""
        if audio is None or self.encoder is None:
            return None
        return self.encoder.embed([audio], sample_rate)[0]

    def measure(self, audios: Sequence[np.ndarray], sample_rate: int, texts: Sequence[str],
                languages: Sequence[str], keys: Sequence[str] | None = None, transcribe: bool = True) -> list[Measured]:
        """Embeddings in one batch, transcripts in one batch per language. ``keys`` (the segments'
        keys) choose the WER sample when ``options.wer_sample`` < 1; without keys all are measured.
        ``transcribe=False``: embeddings only (``with_transcripts`` adds the WER later)."""
        if not len(audios) == len(texts) == len(languages) == (len(audios) if keys is None else len(keys)):
            raise ValueError(f"{len(audios)} audios, {len(texts)} texts, {len(languages)} languages"
                             + ("" if keys is None else f" and {len(keys)} keys"))
        embeddings: Sequence[np.ndarray | None] = [None] * len(audios)
        if self.encoder is not None and len(audios):
            embeddings = list(self.encoder.embed(audios, sample_rate))
        measured = [Measured(embedding=embedding, wer=None, words=len(normalize_words(text)), transcript=None)
                    for embedding, text in zip(embeddings, texts)]
        if not transcribe:
            return measured
        chosen = [i for i in range(len(audios)) if self.wants_transcript(texts[i], None if keys is None else keys[i])]
        heard = self.with_transcripts([measured[i] for i in chosen], [audios[i] for i in chosen], sample_rate,
                                      [texts[i] for i in chosen], [languages[i] for i in chosen])
        for i, values in zip(chosen, heard):
            measured[i] = values
        return measured

    def wants_transcript(self, text: str, key: str | None = None) -> bool:
        """Whether a segment is transcribed: WER on, words to compare, and in the sample (by key)."""
        return (self.asr is not None and bool(normalize_words(text))
                and (key is None or wer_sampled(key, self.options.wer_sample)))

    def with_transcripts(self, measured: Sequence[Measured], audios: Sequence[np.ndarray], sample_rate: int,
                         texts: Sequence[str], languages: Sequence[str]) -> list[Measured]:
        """``measured`` with the transcript and WER of each (one ASR batch per language; a language
        the ASR does not hear stays unmeasured)."""
        out = list(measured)
        if self.asr is None:
            return out
        for language in sorted(set(languages)):
            members = [i for i, lang in enumerate(languages) if lang == language and normalize_words(texts[i])]
            heard = self.asr.transcribe([audios[i] for i in members], sample_rate, language) if members else None
            for i, text in zip(members, heard or []):
                words = normalize_words(texts[i])
                out[i] = replace(out[i], wer=edit_distance(words, normalize_words(text)) / len(words), transcript=text)
        return out
