"""Measuring finished segments off the engine's loop.

Checking a segment for silence means decoding its codes with the codec, which on a GPU costs
more than several engine steps. A `SegmentChecker` does it on a worker thread (on its own CUDA
stream), so the engine keeps every row decoding while segments are measured; the narrator
collects the measurements between steps. Each segment is decoded alone, so its measurement
depends on nothing but its codes.
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
    from pipeline.narrate import NarrationOptions

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
    """Runs `measure(frames)` for submitted items on a worker thread; results come back in `collect`.

    threaded=False measures in `submit` instead (for a simulation on a virtual clock, where a
    thread's real latency would stand for many virtual steps).
    """

    def __init__(self, measure: Callable[[torch.Tensor], float], device: torch.device | None = None,
                 threaded: bool = True) -> None:
        self._measure = measure
        self._stream = torch.cuda.Stream(device) if device is not None and device.type == "cuda" else None
        self._inbox: queue.Queue = queue.Queue()
        self._outbox: queue.Queue = queue.Queue()
        self.pending = 0  # submitted and not yet collected
        self._thread = threading.Thread(target=self._work, name="segment-checker", daemon=True) if threaded else None
        if self._thread is not None:
            self._thread.start()

    def submit(self, item: Any, frames: torch.Tensor) -> None:
        self.pending += 1
        if self._thread is None:
            self._outbox.put((item, self._measured(frames)))
        else:
            self._inbox.put((item, frames))

    def collect(self, wait: bool) -> list[tuple[Any, float]]:
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
        while True:
            item, frames = self._inbox.get()
            if item is _STOP:
                return
            self._outbox.put((item, self._measured(frames)))

    def _measured(self, frames: torch.Tensor) -> float | Exception:
        try:
            stream = torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext()
            with torch.inference_mode(), stream:
                return self._measure(frames)
        except Exception as error:  # handed to the narrator's thread, which raises it
            return error
