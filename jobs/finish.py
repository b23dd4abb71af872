"""Job "finish": finish a narrated book again from its stored segments, without the TTS model.

Decoding, pauses, loudness, exports, subtitles, M4B and index are redone with the current
finishing settings (e.g. `finish.loudness_preset=podcast finish.lossy_format=opus`). The plan
is rebuilt from the same inputs, so its keys name the stored segments; a segment that was never
narrated is reported and nothing is written as complete. In a multirun each job writes to a
folder of its own and reads the shared store (jobs/config.py: job_paths).
"""

from __future__ import annotations

import time

from omegaconf import DictConfig

from jobs import ray_runtime
from jobs.common import (book_info, chapter_work, check_inputs, check_narrated, make_plan, prepare,
                         unmark_complete, write_book)
from pipeline.narration.store import SegmentStore


def run(cfg: DictConfig) -> dict:
    started = time.perf_counter()
    inputs = check_inputs(cfg)
    setup = prepare(cfg, inputs)
    plan = make_plan(cfg, setup, inputs)
    store = SegmentStore(str(setup.store))
    unmark_complete(setup)
    check_narrated(plan, store)
    book = book_info(plan)
    with ray_runtime.connect(setup.cluster):
        finished = ray_runtime.finish_chapters(chapter_work(plan), book, setup, store)
        result = write_book(plan, setup, store, book, finished)
    print(f"finished {result['audio_seconds']:.1f} s of audio in {time.perf_counter() - started:.1f} s; "
          f"index: {result['index']}; book: {result['m4b'] or '(no M4B)'}; flagged segments: {result['flagged']}")
    return result
