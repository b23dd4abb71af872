"""Measuring finished segments off the engine's loop.

Checking a segment for silence means decoding its codes with the codec, which on a GPU costs
more than several engine steps. A `SegmentChecker` does it on a worker thread (on its own CUDA
stream), taking every segment that is waiting as one batch, so the engine keeps every row
decoding while segments are decoded and measured; the narrator collects the measurements
between steps. The measure must treat each segment alone (`pipeline.narration.segment_audio` decodes in
shapes fixed by the segment), so a measurement depends on nothing but the segment's codes.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from moss_model.engine import RowResult
    from pipeline.narration.narrate import NarrationOptions

_STOP = object()


def segment_checks(result: RowResult, est_frames: int, level_dbfs: float, options: NarrationOptions) -> list[str]:
    """Reasons to regenerate a segment (empty when it is fine); level_dbfs: its audio's RMS level."""
    frames = int(result.frames.shape[0])
    checks = []
    if result.hit_frame_limit or not result.finished:
        checks.append("frame_limit")
    if frames == 0:
        return checks + ["no_audio"]
    if options.check_durations:
        if frames < options.min_duration_ratio * est_frames:
            checks.append("too_short")
        if frames > options.max_duration_ratio * est_frames:
            checks.append("too_long")  # also the re-read-the-prefix failure of continuation
    if level_dbfs < options.silence_dbfs:
        checks.append("near_silent")
    return checks


class SegmentChecker:
    """Runs `measure([frames, ...]) -> [measurement, ...]` on batches of submitted items on a worker
    thread; (item, measurement) pairs come back in `collect`. What is handed to `measure` is what
    was submitted as `frames`: a segment's codes, or its codes with what else measuring needs (the
    narrator's quality measures take the segment's text, language and key with them).

    threaded=False measures in `submit` instead (for a simulation on a virtual clock, where a
    thread's real latency would stand for many virtual steps).
    """

    def __init__(self, measure: Callable[[list[Any]], list[Any]], device: torch.device | None = None,
                 threaded: bool = True, max_batch: int = 64) -> None:
        self._measure = measure
        self.max_batch = max_batch
        self._stream = torch.cuda.Stream(device) if device is not None and device.type == "cuda" else None
        self._inbox: queue.Queue = queue.Queue()
        self._outbox: queue.Queue = queue.Queue()
        self.pending = 0  # submitted and not yet collected
        self._thread = threading.Thread(target=self._work, name="segment-checker", daemon=True) if threaded else None
        if self._thread is not None:
            self._thread.start()

    def submit(self, item: Any, frames: Any) -> None:
        self.pending += 1
        if self._thread is None:
            self._outbox.put((item, self._measured([frames])[0]))
        else:
            self._inbox.put((item, frames))

    def collect(self, wait: bool) -> list[tuple[Any, Any]]:
        """(item, measurement) of every finished item; with `wait`, at least one if any is pending."""
        results = []
        if wait and self.pending:
            results.append(self._outbox.get())
        while True:
            try:
                results.append(self._outbox.get_nowait())
            except queue.Empty:
                break
        self.pending -= len(results)
        for _, value in results:
            if isinstance(value, BaseException):
                raise RuntimeError("measuring a finished segment failed") from value
        return results

    def close(self) -> None:
        if self._thread is not None:
            self._inbox.put((_STOP, None))
            self._thread.join()

    def _work(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._inbox.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            if any(item is _STOP for item, _ in batch):
                stopping = True
                batch = [(item, frames) for item, frames in batch if item is not _STOP]
            if batch:
                for (item, _), value in zip(batch, self._measured([frames for _, frames in batch])):
                    self._outbox.put((item, value))

    def _measured(self, frames: list[Any]) -> list[Any]:
        try:
            stream = torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext()
            with torch.inference_mode(), stream:
                values = list(self._measure(frames))
            if len(values) != len(frames):
                raise ValueError(f"measure gave {len(values)} results for {len(frames)} segments")
            return values
        except Exception as error:  # handed to the narrator's thread, which raises it
            return [error] * len(frames)
