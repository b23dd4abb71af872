"""Speaker similarity of a run's segments: to the voice reference and to the run so far.

A ``RunSimilarity`` holds one run's state: the reference embedding and the embeddings of the
segments it has accepted, in order. Segment k is measured against the mean of segments 0..k-1
of its own run and nothing else, so its value does not depend on how runs were scheduled or
what was batched with it. A regenerated segment is measured again against the same earlier
segments; only the attempt that is kept is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.quality.speaker import cosine_similarity, unit


@dataclass(frozen=True)
class Spread:
    """Median and median absolute deviation of some values (``count`` of them)."""

    median: float
    mad: float
    count: int

    @staticmethod
    def of(values: list[float] | np.ndarray) -> Spread | None:
        values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
        if values.size == 0:
            return None
        median = float(np.median(values))
        return Spread(median, float(np.median(np.abs(values - median))), int(values.size))


@dataclass(frozen=True)
class SegmentSimilarity:
    to_reference: float | None  # None: no reference embedding (a voice generated from the first segment)
    to_run: float | None  # None: the run's first segment


class RunSimilarity:
    """One run's similarity state. Use it in the run's order::

        state = RunSimilarity(reference_embedding)
        for k, embedding in enumerate(segment_embeddings):
            value = state.measure(k, embedding)   # any number of times (retries)
            ...decide...
            state.accept(k, kept_embedding)        # exactly once, in order
    """

    def __init__(self, reference: np.ndarray | None) -> None:
        self.reference = None if reference is None else unit(reference)
        self._sum: np.ndarray | None = None
        self.accepted = 0
        self.to_reference: list[float] = []  # accepted segments' values, for the run's own spread
        self.to_run: list[float] = []

    def measure(self, index: int, embedding: np.ndarray) -> SegmentSimilarity:
        """Similarities of segment ``index`` of this run (its earlier segments all accepted)."""
        if index != self.accepted:
            raise ValueError(f"segment {index} measured after {self.accepted} accepted segments: a run is measured in order")
        to_reference = None if self.reference is None else float(cosine_similarity(embedding, self.reference))
        to_run = None if self._sum is None else float(cosine_similarity(embedding, self._sum / self.accepted))
        return SegmentSimilarity(to_reference, to_run)

    def accept(self, index: int, embedding: np.ndarray) -> SegmentSimilarity:
        """Keep segment ``index`` (the attempt that stays) as part of the run's mean; its values."""
        value = self.measure(index, embedding)
        vector = unit(embedding).astype(np.float64)
        self._sum = vector if self._sum is None else self._sum + vector
        self.accepted += 1
        if value.to_reference is not None:
            self.to_reference.append(value.to_reference)
        if value.to_run is not None:
            self.to_run.append(value.to_run)
        return value

    def spreads(self) -> tuple[Spread | None, Spread | None]:
        """(to_reference, to_run) spreads of the accepted segments: the run's own distribution."""
        return Spread.of(self.to_reference), Spread.of(self.to_run)
