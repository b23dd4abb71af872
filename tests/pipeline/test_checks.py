"""Measuring segments on a worker thread: every item comes back once, waiting items are measured as
one batch, errors reach the caller."""

import threading

import pytest
import torch

from pipeline.narration.checks import SegmentChecker


def sums(frames: list[torch.Tensor]) -> list[float]:
    return [float(f.sum()) for f in frames]


def test_every_item_comes_back_once_with_its_measurement():
    checker = SegmentChecker(sums)
    try:
        for i in range(20):
            checker.submit(f"item{i}", torch.full((3, 2), i))
        got = {}
        while checker.pending:
            got.update(checker.collect(wait=True))
        assert got == {f"item{i}": 6.0 * i for i in range(20)}
        assert checker.collect(wait=True) == []  # nothing pending: returns at once
    finally:
        checker.close()


def test_items_waiting_while_the_worker_is_busy_are_measured_as_one_batch():
    release = threading.Event()
    batches = []

    def measure(frames):
        release.wait(10)  # the first call holds the worker while the rest queue up
        batches.append(len(frames))
        return sums(frames)

    checker = SegmentChecker(measure, max_batch=4)
    try:
        for i in range(7):
            checker.submit(i, torch.full((1,), i))
        release.set()
        got = {}
        while checker.pending:
            got.update(checker.collect(wait=True))
        assert got == {i: float(i) for i in range(7)}
        assert sum(batches) == 7 and max(batches) == 4 and len(batches) <= 4
    finally:
        checker.close()


def test_a_failed_measurement_is_raised_in_the_caller():
    def measure(frames):
        raise ValueError("codec exploded")

    checker = SegmentChecker(measure)
    try:
        checker.submit("bad", torch.zeros(1, 1))
        with pytest.raises(RuntimeError, match="measuring a finished segment failed") as raised:
            checker.collect(wait=True)
        assert isinstance(raised.value.__cause__, ValueError)
    finally:
        checker.close()


def test_a_measure_that_loses_items_is_an_error():
    checker = SegmentChecker(lambda frames: [], threaded=False)
    checker.submit("a", torch.zeros(1, 1))
    with pytest.raises(RuntimeError, match="measuring a finished segment failed"):
        checker.collect(wait=False)
    checker.close()


def test_unthreaded_checks_measure_in_submit():
    checker = SegmentChecker(lambda frames: [float(f.numel()) for f in frames], threaded=False)
    checker.submit("a", torch.zeros(4, 2))
    assert checker.pending == 1 and checker.collect(wait=False) == [("a", 8.0)] and checker.pending == 0
    checker.close()
