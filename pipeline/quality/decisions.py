"""What to do with a measured segment: keep it, regenerate it, or keep it flagged.

``decide`` is a pure function of the segment's measures, the distribution it is compared with
and the options. Similarity is judged two ways: against absolute floors (a voice that is not
the reference's at all: noise, another speaker) and against the distribution so far (median
minus a number of MADs: a segment unlike the rest of its book or run). WER is judged against an
absolute ceiling, only for segments with enough words. A similarity failure asks for the
segment to be re-anchored (its prompt without the carried prefix): the voice drifted, and the
prefix carries the drift on.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.quality.similarity import Spread

OK, REGENERATE, FLAG = "ok", "regenerate", "flag"

# Flags, as recorded in the index's quality_flags column.
SIMILARITY_FLOOR = "similarity_below_floor"
SIMILARITY_OUTLIER = "similarity_outlier"
RUN_SIMILARITY_FLOOR = "run_similarity_below_floor"
RUN_SIMILARITY_OUTLIER = "run_similarity_outlier"
HIGH_WER = "wer_above_threshold"
SIMILARITY_FLAGS = (SIMILARITY_FLOOR, SIMILARITY_OUTLIER, RUN_SIMILARITY_FLOOR, RUN_SIMILARITY_OUTLIER)


@dataclass(frozen=True)
class QualityOptions:
    """Per-segment quality measures and what acts on them. Similarities are Resemblyzer cosines
    (0..1): halves of one real recording score about 0.75-0.9, different speakers and noise
    about 0.3-0.65."""

    act: bool = True  # regenerate and flag on the measures; False: measure and record only
    similarity: bool = True  # measure speaker similarity and act on it
    wer: bool = True  # measure WER where the ASR hears the language, and act on it
    asr: str = "pocketsphinx"  # or "whisper" (asr_path: a local model folder)
    asr_path: str | None = None
    min_similarity: float = 0.65  # floor on similarity to the reference
    min_similarity_to_run: float = 0.65  # floor on similarity to the run's earlier segments
    similarity_mads: float = 4.0  # relative rule: below median - similarity_mads * MAD ...
    min_similarity_margin: float = 0.05  # ... and at least this far below the median
    min_history: int = 8  # values in the distribution before the relative rule applies
    max_wer: float = 0.5  # PocketSphinx misses ~15% of clean read English: keep this loose
    wer_sample: float = 1.0  # fraction of segments transcribed (chosen by key): PocketSphinx costs ~0.2 CPU-s per audio-s
    min_wer_words: int = 4  # shorter segments are not judged on WER (one word is 25-100%)
    max_regenerations: int = 2  # then a failing segment is kept and flagged

    def __post_init__(self) -> None:
        if self.asr not in ("pocketsphinx", "whisper"):
            raise ValueError(f"quality asr must be one of pocketsphinx, whisper; got {self.asr!r}")
        if self.asr == "whisper" and not self.asr_path:
            raise ValueError("quality asr 'whisper' needs asr_path, a local model folder")
        for name in ("min_similarity", "min_similarity_to_run"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"quality {name} must lie in [-1, 1]; got {getattr(self, name)}")
        if not 0.0 <= self.wer_sample <= 1.0:
            raise ValueError(f"quality wer_sample must lie in [0, 1]; got {self.wer_sample}")
        for name in ("similarity_mads", "min_similarity_margin", "max_wer"):
            if getattr(self, name) < 0:
                raise ValueError(f"quality {name} must not be negative; got {getattr(self, name)}")
        if self.min_history < 1 or self.min_wer_words < 1 or self.max_regenerations < 0:
            raise ValueError("quality min_history and min_wer_words must be >= 1, max_regenerations >= 0")


@dataclass(frozen=True)
class SegmentMeasures:
    """One attempt's measures; None means not measured (switched off, no reference, first of its
    run, a language the ASR does not hear)."""

    similarity_to_reference: float | None = None
    similarity_to_run: float | None = None
    wer: float | None = None
    words: int = 0  # words in the segment's normalized text
    transcript: str | None = None


@dataclass(frozen=True)
class Decision:
    action: str  # ok | regenerate | flag
    flags: tuple[str, ...] = ()  # what failed (the constants above)
    reasons: tuple[str, ...] = ()  # the same, with the numbers, for people
    reanchor: bool = False  # regenerate without the carried prefix (a similarity failure)


@dataclass(frozen=True)
class Distribution:
    """What a segment is compared with: spreads of earlier values (None: too few to judge by)."""

    to_reference: Spread | None = None
    to_run: Spread | None = None


def _below(value: float, spread: Spread | None, options: QualityOptions) -> float | None:
    """The relative threshold ``value`` falls below, or None."""
    if spread is None or spread.count < options.min_history:
        return None
    threshold = spread.median - max(options.similarity_mads * spread.mad, options.min_similarity_margin)
    return threshold if value < threshold else None


def decide(measures: SegmentMeasures, distribution: Distribution | None, options: QualityOptions,
           attempt: int = 1) -> Decision:
    """Keep, regenerate or flag one attempt (``attempt`` counts from 1) of a segment."""
    distribution = distribution or Distribution()
    failed: list[tuple[str, str]] = []
    if options.similarity:
        value = measures.similarity_to_reference
        if value is not None:
            if value < options.min_similarity:
                failed.append((SIMILARITY_FLOOR, f"similarity to the reference {value:.3f} < {options.min_similarity:.3f}"))
            elif ((spread := distribution.to_reference) is not None
                  and (threshold := _below(value, spread, options)) is not None):
                failed.append((SIMILARITY_OUTLIER, f"similarity to the reference {value:.3f} < {threshold:.3f} "
                               f"(median {spread.median:.3f}, MAD {spread.mad:.3f})"))
        value = measures.similarity_to_run
        if value is not None:
            if value < options.min_similarity_to_run:
                failed.append((RUN_SIMILARITY_FLOOR,
                               f"similarity to the run so far {value:.3f} < {options.min_similarity_to_run:.3f}"))
            elif ((spread := distribution.to_run) is not None
                  and (threshold := _below(value, spread, options)) is not None):
                failed.append((RUN_SIMILARITY_OUTLIER, f"similarity to the run so far {value:.3f} < {threshold:.3f} "
                               f"(median {spread.median:.3f}, MAD {spread.mad:.3f})"))
    if options.wer and measures.wer is not None and measures.words >= options.min_wer_words:
        if measures.wer > options.max_wer:
            heard = f" (heard: {measures.transcript!r})" if measures.transcript is not None else ""
            failed.append((HIGH_WER, f"WER {measures.wer:.2f} > {options.max_wer:.2f}{heard}"))
    if not failed:
        return Decision(OK)
    flags = tuple(flag for flag, _ in failed)
    action = REGENERATE if attempt <= options.max_regenerations else FLAG
    return Decision(action, flags, tuple(reason for _, reason in failed),
                    reanchor=action == REGENERATE and any(f in SIMILARITY_FLAGS for f in flags))
