import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from moss_model.delay import apply_delay, split_at_pad_rows, undo_delay

PAD = 1024


def naive_delay(codes: torch.Tensor, pad: int) -> torch.Tensor:
    L, K = codes.shape
    out = torch.full((L + K - 1, K), pad, dtype=codes.dtype)
    for k in range(K):
        for t in range(L):
            out[t + k, k] = codes[t, k]
    return out


def naive_undo(delayed: torch.Tensor) -> torch.Tensor:
    R, K = delayed.shape
    out = torch.zeros((R - K + 1, K), dtype=delayed.dtype)
    for k in range(K):
        for t in range(R - K + 1):
            out[t, k] = delayed[t + k, k]
    return out


codes_strategy = st.tuples(st.integers(0, 12), st.integers(1, 9), st.integers(0, 2**31 - 1)).map(
    lambda a: torch.randint(0, PAD, (a[0], a[1]), generator=torch.Generator().manual_seed(a[2]))
)


@settings(max_examples=60, deadline=None)
@given(codes_strategy)
def test_delay_matches_naive_loop(codes):
    delayed = apply_delay(codes, PAD)
    assert torch.equal(delayed, naive_delay(codes, PAD))
    assert torch.equal(undo_delay(delayed), codes)
    assert torch.equal(undo_delay(delayed), naive_undo(delayed))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.booleans(), min_size=0, max_size=30), st.integers(0, 1000))
def test_split_at_pad_rows_matches_naive(real_rows, seed):
    frames = torch.randint(0, PAD, (len(real_rows), 4), generator=torch.Generator().manual_seed(seed))
    for row, real in enumerate(real_rows):
        if not real:
            frames[row] = PAD
    expected, current = [], []
    for row, real in enumerate(real_rows):
        if real:
            current.append(frames[row])
        elif current:
            expected.append(torch.stack(current))
            current = []
    if current:
        expected.append(torch.stack(current))
    runs = split_at_pad_rows(frames, PAD)
    assert len(runs) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(runs, expected))


def test_partly_padded_row_is_not_a_separator():
    frames = torch.tensor([[1, 2], [PAD, 3], [4, 5]])
    assert len(split_at_pad_rows(frames, PAD)) == 1
