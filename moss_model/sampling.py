"""Sampling with per-row seeds and settings that do not depend on the rest of the batch.

Random numbers come from a counter-based hash of (row seed, step, channel, token id) rather
than a shared generator: a row draws the same numbers whatever else is in the batch, on CPU
and GPU alike, with no per-row generator objects and no host synchronisation. Sampling uses
the Gumbel-max trick (argmax of logits/temperature + Gumbel noise), which draws from the same
distribution as a multinomial over the softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class SamplingParams:
    """One channel group's sampling settings; temperature 0 means greedy."""

    temperature: float
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class DecodingParams:
    """Text and audio channel groups; defaults are the released MOSS-TTS recommendations."""

    text: SamplingParams = SamplingParams(temperature=1.5, top_p=1.0, top_k=50)
    audio: SamplingParams = SamplingParams(temperature=1.7, top_p=0.8, top_k=25, repetition_penalty=1.0)

    @classmethod
    def greedy(cls) -> DecodingParams:
        return cls(SamplingParams(0.0), SamplingParams(0.0))


def fmix32(h: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 32-bit finalizer on int64 tensors holding 32-bit values.

    Products may pass 2**63 and wrap; masking keeps the exact low 32 bits either way.
    """
    h = h & MASK32
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & MASK32
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & MASK32
    return h ^ (h >> 16)


def row_keys(seeds: torch.Tensor) -> torch.Tensor:
    """Per-row 32-bit keys from 64-bit seeds [B]."""
    low = seeds & MASK32
    high = (seeds >> 32) & MASK32
    return fmix32(low ^ fmix32(high + 0x9E3779B9))


def step_keys(keys: torch.Tensor, step: int | torch.Tensor) -> torch.Tensor:
    """The keys [B] of one generation step, shared by every channel of that step."""
    return fmix32(keys ^ ((step * 0x27D4EB2F + 0x165667B1) & MASK32))


def uniform(keys: torch.Tensor, channel: torch.Tensor | int, token_ids: torch.Tensor) -> torch.Tensor:
    """Uniform numbers in (0, 1) for each token id.

    keys [B] (from step_keys); channel an int or a tensor broadcastable to token_ids[..., 0];
    token_ids [B, ..., N].
    """
    h = keys
    while h.dim() < token_ids.dim() - 1:
        h = h.unsqueeze(-1)
    h = fmix32(h ^ ((channel * 0x68E31DA4 + 0x1B873593) & MASK32))
    h = fmix32(h.unsqueeze(-1) ^ ((token_ids * 0x9E3779B1) & MASK32))
    return (h.double() + 0.5) / 4294967296.0


def gumbel(u: torch.Tensor) -> torch.Tensor:
    return -torch.log(-torch.log(u)).float()


@dataclass(frozen=True)
class SamplingPlan:
    """The truncation work one channel group needs over a vocabulary, for every row at once.

    Decided on the host from the rows' settings (no device reads): `candidates` is the top-k
    width shared by the batch (None: the whole vocabulary, sorted when some row uses top-p);
    rows with a smaller k than the width are cut by rank.
    """

    sampled: bool  # some row samples (temperature > 0)
    greedy: bool  # some row is greedy
    candidates: int | None
    sort: bool
    cut_by_rank: bool
    top_p: bool
    repetition_penalty: bool

    @classmethod
    def for_rows(cls, params: list[SamplingParams], vocab: int) -> SamplingPlan:
        sampled = [p for p in params if not p.greedy]
        ks = [p.top_k if 0 < p.top_k < vocab else vocab for p in sampled]
        width = max(ks, default=vocab)
        top_p = any(p.top_p < 1.0 for p in sampled)
        return cls(
            sampled=bool(sampled),
            greedy=len(sampled) < len(params),
            candidates=width if width < vocab else None,
            sort=width >= vocab and top_p,
            cut_by_rank=any(k < width for k in ks),
            top_p=top_p,
            repetition_penalty=any(p.repetition_penalty != 1.0 for p in params),
        )


class RowSamplingParams:
    """One channel group's settings per row, as device tensors [B] (set when a row is admitted)."""

    def __init__(self, batch: int, device: torch.device) -> None:
        self.temperature = torch.ones(batch, dtype=torch.float32, device=device)
        self.top_k = torch.zeros(batch, dtype=torch.long, device=device)
        self.top_p = torch.ones(batch, dtype=torch.float32, device=device)
        self.repetition_penalty = torch.ones(batch, dtype=torch.float32, device=device)

    def set(self, row: int, params: SamplingParams) -> None:
        self.temperature[row] = params.temperature
        self.top_k[row] = params.top_k
        self.top_p[row] = params.top_p
        self.repetition_penalty[row] = params.repetition_penalty

    def tensors(self) -> list[torch.Tensor]:
        return [self.temperature, self.top_k, self.top_p, self.repetition_penalty]

    def select(self, rows: torch.Tensor) -> RowSamplingParams:
        """The settings of `rows` (an index tensor), as a new set."""
        selected = RowSamplingParams.__new__(RowSamplingParams)
        for name in ("temperature", "top_k", "top_p", "repetition_penalty"):
            setattr(selected, name, getattr(self, name)[rows])
        return selected


def apply_row_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """apply_repetition_penalty with a penalty per row (logits [B, ..., V], seen bool like logits, penalty [B])."""
    penalty = penalty.view(-1, *([1] * (logits.dim() - 1)))
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen & (penalty != 1.0), penalized, logits)


def sample_rows(
    logits: torch.Tensor,  # B, ..., V (float)
    rows: RowSamplingParams,
    plan: SamplingPlan,
    keys: torch.Tensor,  # B, from step_keys
    channel: torch.Tensor | int,
) -> torch.Tensor:
    """Token ids [B, ...]: greedy, or top-k then top-p then a seeded draw, with settings per row.

    Every row draws its own numbers, so a row's choice does not depend on the other rows (up to
    rounding of the top-p mass when rows with different top-k widths share a batch). The draw
    is the Gumbel-max trick: argmax of logits/temperature + Gumbel noise keyed by token id.
    """
    if not plan.sampled:
        return logits.argmax(dim=-1)
    shape = (-1,) + (1,) * (logits.dim() - 1)
    temperature = rows.temperature.view(shape)
    temperature = torch.where(temperature > 0, temperature, torch.ones_like(temperature))
    vocab = logits.shape[-1]
    # Dividing by a positive temperature keeps the order: candidates first, then scale only them.
    if plan.candidates is not None:
        values, ids = torch.topk(logits, plan.candidates, dim=-1)
    elif plan.sort:
        values, ids = torch.sort(logits, dim=-1, descending=True)
    else:
        ids = torch.arange(vocab, device=logits.device).expand_as(logits)
        values = logits
    values = values.float() / temperature
    if plan.cut_by_rank:
        rank = torch.arange(values.shape[-1], device=values.device)
        top_k = rows.top_k.view(shape)
        values = values.masked_fill((top_k > 0) & (rank >= top_k), float("-inf"))
    if plan.top_p:
        top_p = rows.top_p.view(shape)
        probs = torch.softmax(values, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # mass of the better-ranked candidates
        values = values.masked_fill((before > top_p) & (top_p < 1.0), float("-inf"))
    noise = gumbel(uniform(keys, channel, ids))
    choice = (values + noise).argmax(dim=-1, keepdim=True)
    sampled = ids.gather(-1, choice).squeeze(-1)
    if plan.greedy:
        sampled = torch.where(rows.temperature.view(shape[:-1]) == 0, logits.argmax(dim=-1), sampled)
    return sampled
