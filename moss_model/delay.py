"""The delay pattern: codebook k of frame t sits on row t + k.

Frames `codes` [L, K] become [L + K - 1, K] with pad everywhere a codebook has no frame.
"""

from __future__ import annotations

import torch


def apply_delay(codes: torch.Tensor, pad_code: int) -> torch.Tensor:
    """codes [L, K] -> delayed [L + K - 1, K]."""
    L, K = codes.shape
    rows = torch.arange(L + K - 1, device=codes.device)[:, None] - torch.arange(K, device=codes.device)[None, :]
    valid = (rows >= 0) & (rows < L)
    gathered = codes[rows.clamp(0, max(L - 1, 0)), torch.arange(K, device=codes.device)[None, :]] if L else rows
    return torch.where(valid, gathered, torch.full_like(rows, pad_code)).to(codes.dtype)


def undo_delay(delayed: torch.Tensor) -> torch.Tensor:
    """delayed [R, K] -> frames [R - K + 1, K] (codebook k read from row k onward)."""
    R, K = delayed.shape
    L = max(R - K + 1, 0)
    rows = torch.arange(L, device=delayed.device)[:, None] + torch.arange(K, device=delayed.device)[None, :]
    return delayed[rows, torch.arange(K, device=delayed.device)[None, :]]


def split_at_pad_rows(frames: torch.Tensor, pad_code: int) -> list[torch.Tensor]:
    """Runs of frames separated by rows that are entirely pad (empty list when all pad)."""
    real = ~(frames == pad_code).all(dim=1)
    indices = torch.nonzero(real).squeeze(1).tolist()
    runs: list[torch.Tensor] = []
    begin = None
    for position, index in enumerate(indices):
        if begin is None:
            begin = index
        if position + 1 == len(indices) or indices[position + 1] != index + 1:
            runs.append(frames[begin : index + 1])
            begin = None
    return runs
