"""Per-segment quality: speaker similarity, WER, what to do about them, and the report.

Modules, one job each:

- ``speaker``: ``SpeakerEncoder(device="cpu").embed(audios, sample_rate) -> ndarray [N, 256]``
  (Resemblyzer's pretrained encoder, its weights in ``weights/`` as safetensors; audio float mono at any rate,
  resampled to 16 kHz; many segments in one LSTM batch); ``cosine_similarity(a, b)``.
- ``similarity``: ``RunSimilarity(reference_embedding)`` per run, used in the run's order:
  ``measure(k, embedding) -> SegmentSimilarity(to_reference, to_run)`` (any number of times,
  for retries) and ``accept(k, embedding)`` (once, for the attempt kept). Segment k is compared
  with segments 0..k-1 of its run only, so its value does not depend on the schedule.
  ``spreads() -> (Spread | None, Spread | None)``: median/MAD of the run's accepted values.
  ``Spread.of(values)`` for any other distribution (e.g. the book's, in a final pass).
- ``asr``: ``ASR`` protocol ``transcribe(audio_batch, sample_rate, language) -> list[str] | None``
  (None: a language it does not hear, "not measured"); ``PocketSphinxASR()`` (English, model in
  the wheel; decodes in a worker process, ``sphinx_worker``, because it holds the GIL for a whole
  utterance; ``in_process=True`` for scripts), ``WhisperASR(path)`` (transformers, local folder,
  safetensors only); ``load_asr(kind, path, device)``.
- ``wer``: ``normalize_words(text)``, ``edit_distance(ref_words, hyp_words)``,
  ``word_error_rate(reference, hypothesis) -> float | None``.
- ``decisions``: ``QualityOptions`` (switches and thresholds; ``act=False`` measures and records
  without regenerating or flagging), ``SegmentMeasures``,
  ``Distribution(to_reference: Spread | None, to_run: Spread | None)``,
  ``decide(measures, distribution, options, attempt=1) -> Decision(action, flags, reasons, reanchor)``
  with action ``"ok" | "regenerate" | "flag"``; ``reanchor`` asks for the retry without the
  carried prefix (a similarity failure).
- ``measures``: ``QualityMeasurer(options, device)``: ``reference_embedding(audio, rate)`` and
  ``measure(audios, rate, texts, languages) -> [Measured(embedding, wer, words, transcript)]``
  (one embedding batch, one ASR batch per language; ``transcribe=False`` for embeddings only,
  then ``wants_transcript(text, key)`` / ``with_transcripts(...)``, as the narrator does on two
  threads); ``Measured.with_run(state, k) -> SegmentMeasures``.
- ``report``: ``write_report(output, destination=None, options=None) -> Report(html, plots,
  segments, flagged)`` from ``<output>/index/``; ``write_book_report(output, options)`` the same
  as narration's last step (a failure is a warning); ``chapter_summary(segment_rows)``.

Wiring one batch of decoded segments in the narrator (``pipeline.narration.narrate`` does this)::

    measurer = QualityMeasurer(options)                      # once per actor
    runs = {run: RunSimilarity(measurer.reference_embedding(ref_audio, codec.sample_rate))}
    measured = measurer.measure(audios, codec.sample_rate, texts, languages)
    for m, seg in zip(measured, segments):                    # each run's segments in order
        state = runs[seg.run]
        values = m.with_run(state, seg.index_in_run)
        decision = decide(values, Distribution(*state.spreads()), options, attempt=seg.attempt)
        if decision.action != "regenerate":
            state.accept(seg.index_in_run, m.embedding)       # only the attempt kept
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names, for type checkers and readers
    from pipeline.quality.asr import ASR, PocketSphinxASR, WhisperASR, load_asr
    from pipeline.quality.decisions import Decision, Distribution, FLAG, OK, QualityOptions, REGENERATE, SegmentMeasures, decide
    from pipeline.quality.measures import Measured, QualityMeasurer
    from pipeline.quality.report import Report, chapter_summary, write_book_report, write_report
    from pipeline.quality.similarity import RunSimilarity, SegmentSimilarity, Spread
    from pipeline.quality.speaker import SpeakerEncoder, cosine_similarity
    from pipeline.quality.wer import edit_distance, normalize_words, word_error_rate

# name -> module. Loaded on first use, so that importing one light module of this package (e.g.
# the PocketSphinx worker process, or the index) does not import torch, pyarrow and matplotlib.
_EXPORTS = {
    "ASR": "asr", "PocketSphinxASR": "asr", "WhisperASR": "asr", "load_asr": "asr",
    "FLAG": "decisions", "OK": "decisions", "REGENERATE": "decisions", "Decision": "decisions",
    "Distribution": "decisions", "QualityOptions": "decisions", "SegmentMeasures": "decisions", "decide": "decisions",
    "Measured": "measures", "QualityMeasurer": "measures",
    "Report": "report", "chapter_summary": "report", "write_book_report": "report", "write_report": "report",
    "RunSimilarity": "similarity", "SegmentSimilarity": "similarity", "Spread": "similarity",
    "SpeakerEncoder": "speaker", "cosine_similarity": "speaker",
    "edit_distance": "wer", "normalize_words": "wer", "word_error_rate": "wer",
}
__all__ = [
    "ASR", "Decision", "Distribution", "FLAG", "Measured", "OK", "PocketSphinxASR", "QualityMeasurer",
    "QualityOptions", "REGENERATE", "Report", "RunSimilarity", "SegmentMeasures", "SegmentSimilarity",
    "SpeakerEncoder", "Spread", "WhisperASR", "chapter_summary", "cosine_similarity", "decide",
    "edit_distance", "load_asr", "normalize_words", "word_error_rate", "write_book_report", "write_report",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
