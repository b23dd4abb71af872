"""Measuring segments on a worker thread: every item comes back once, errors reach the caller."""

import pytest
import torch

from pipeline.checks import SegmentChecker


def test_every_item_comes_back_once_with_its_measurement():
    checker = SegmentChecker(lambda frames: float(frames.sum()))
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


def test_unthreaded_checks_measure_in_submit():
    checker = SegmentChecker(lambda frames: float(frames.numel()), threaded=False)
    checker.submit("a", torch.zeros(4, 2))
    assert checker.pending == 1 and checker.collect(wait=False) == [("a", 8.0)] and checker.pending == 0
    checker.close()
