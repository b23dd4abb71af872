"""Building blocks of the MOSS audio codec.

Layout: everything runs time-major, `[B, T, C]` (the released model is written channel-major;
the weights do not care). Attribute names follow the released state-dict keys exactly, so a
strict load needs no renaming:

    {encoder,decoder}.{i}.input_proj.weight / output_proj.weight       (absent when widths agree)
    {encoder,decoder}.{i}.transformer.layers.{j}.self_attn.in_projs.0.weight   [3D, D]
    ...self_attn.out_projs.0.weight [D, D], norm1/norm2.{weight,bias}, linear1/linear2.weight,
    layer_scale_1/layer_scale_2.scale
    quantizer.{input,output}_proj.parametrizations.weight.original{0,1} + .bias  (weight norm)
    quantizer.quantizers.{k}.{in,out}_proj.(same) and .codebook.weight [codebook_size, codebook_dim]

Streaming state is explicit data: each transformer stage takes a `StageState` (absolute offset
plus one key/value cache per layer, trimmed to the attention context) and returns the new one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from moss_model.codec.config import QuantizerConfig, TransformerStage

# ----------------------------------------------------------------------------- state


@dataclass
class LayerCache:
    """Keys and values of the last `context - 1` steps of one attention layer."""

    keys: torch.Tensor  # B, H, S, Dh
    values: torch.Tensor  # B, H, S, Dh


@dataclass
class StageState:
    """Where a transformer stage stands in a stream: steps seen so far and per-layer caches."""

    offset: int
    caches: list[LayerCache | None]

    def nbytes(self) -> int:
        return sum(c.keys.nbytes + c.values.nbytes for c in self.caches if c is not None)


# ----------------------------------------------------------------------------- RoPE


def rope_tables(offset: int, steps: int, head_dim: int, max_period: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of the rotation angles for absolute positions offset..offset+steps-1: [T, Dh/2] each.

    Computed in float32 as `freq * position` (positions as float32), the same arithmetic as the
    released model, so positions far into an hour-long stream give the same angles as there.
    """
    half = head_dim // 2
    ds = torch.arange(half, device=device, dtype=torch.float32)
    freqs = torch.exp(ds * (-math.log(max_period) * 2 / head_dim))
    ts = float(offset) + torch.arange(steps, device=device, dtype=torch.float32)
    angles = freqs * ts.view(-1, 1)
    return torch.cos(angles), torch.sin(angles)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x[..., 2i], x[..., 2i+1]) of x [B, H, T, Dh]."""
    shape = x.shape
    pairs = x.reshape(*shape[:-1], shape[-1] // 2, 2)
    real, imag = pairs[..., 0].float(), pairs[..., 1].float()
    out_real = real * cos - imag * sin
    out_imag = real * sin + imag * cos
    return torch.stack([out_real.to(x.dtype), out_imag.to(x.dtype)], dim=-1).reshape(shape)


# ----------------------------------------------------------------------------- norms


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, float32: bool) -> None:
        super().__init__()
        self.eps = eps
        self.float32 = float32
        self.alpha = nn.Parameter(torch.ones(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.float() if self.float32 else x
        var = self.eps + torch.mean(h * h, dim=-1, keepdim=True)
        return (h * (self.alpha.to(var) * torch.rsqrt(var))).to(dtype)


def make_norm(kind: str, dim: int) -> nn.Module:
    if kind == "layer_norm":
        return nn.LayerNorm(dim, eps=1e-5)
    if kind == "rms_norm":
        return RMSNorm(dim, eps=1e-5, float32=False)
    return RMSNorm(dim, eps=1e-8, float32=True)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


# ----------------------------------------------------------------------------- attention


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention over a bounded window of `context` steps, with RoPE."""

    def __init__(self, dim: int, num_heads: int, context: int) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.context = context
        # ModuleLists of one, to match the released key names (in_projs.0.weight, out_projs.0.weight).
        self.in_projs = nn.ModuleList([nn.Linear(dim, 3 * dim, bias=False)])
        self.out_projs = nn.ModuleList([nn.Linear(dim, dim, bias=False)])

    def forward(
        self,
        x: torch.Tensor,  # B, T, D
        rope: tuple[torch.Tensor, torch.Tensor],
        offset: int,
        cache: LayerCache | None,
        keep_cache: bool,
    ) -> tuple[torch.Tensor, LayerCache | None]:
        B, T, _ = x.shape
        H, Dh = self.num_heads, self.head_dim
        qkv = self.in_projs[0](x).reshape(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # B, H, T, Dh
        cos, sin = rope
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        past = 0
        if cache is not None:
            past = cache.keys.shape[2]
            k = torch.cat([cache.keys, k], dim=2)
            v = torch.cat([cache.values, v], dim=2)
        if past == 0 and T <= self.context:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            q_pos = torch.arange(past, past + T, device=x.device).view(-1, 1)
            k_pos = torch.arange(past + T, device=x.device).view(1, -1)
            delta = q_pos - k_pos
            mask = (delta >= 0) & (delta < self.context)  # T, S+T
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = self.out_projs[0](out.transpose(1, 2).reshape(B, T, self.dim))
        new_cache = None
        if keep_cache:
            keep = self.context - 1
            new_cache = LayerCache(k[:, :, -keep:] if keep else k[:, :, :0], v[:, :, -keep:] if keep else v[:, :, :0])
        return out, new_cache


class TransformerLayer(nn.Module):
    def __init__(self, stage: TransformerStage, context: int) -> None:
        super().__init__()
        d = stage.d_model
        self.self_attn = CausalSelfAttention(d, stage.num_heads, context)
        self.norm1 = make_norm(stage.norm, d)
        self.norm2 = make_norm(stage.norm, d)
        self.linear1 = nn.Linear(d, stage.dim_feedforward, bias=False)
        self.linear2 = nn.Linear(stage.dim_feedforward, d, bias=False)
        if stage.layer_scale is None:
            self.layer_scale_1: nn.Module = nn.Identity()
            self.layer_scale_2: nn.Module = nn.Identity()
        else:
            self.layer_scale_1 = LayerScale(d, stage.layer_scale)
            self.layer_scale_2 = LayerScale(d, stage.layer_scale)

    def forward(self, x, rope, offset, cache, keep_cache):
        update, cache = self.self_attn(self.norm1(x), rope, offset, cache, keep_cache)
        x = x + self.layer_scale_1(update)
        update = self.linear2(F.gelu(self.linear1(self.norm2(x))))
        x = x + self.layer_scale_2(update)
        return x, cache


class Transformer(nn.Module):
    def __init__(self, stage: TransformerStage, context: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([TransformerLayer(stage, context) for _ in range(stage.num_layers)])


class TransformerStack(nn.Module):
    """One transformer stage of the encoder or decoder: input projection, layers, output projection."""

    def __init__(self, stage: TransformerStage, context: int) -> None:
        super().__init__()
        self.stage = stage
        self.context = context
        if stage.input_dimension != stage.d_model:
            self.input_proj = nn.Linear(stage.input_dimension, stage.d_model, bias=False)
        else:
            self.input_proj = None
        self.transformer = Transformer(stage, context)
        if stage.output_dimension != stage.d_model:
            self.output_proj = nn.Linear(stage.d_model, stage.output_dimension, bias=False)
        else:
            self.output_proj = None

    def init_state(self) -> StageState:
        return StageState(offset=0, caches=[None] * len(self.transformer.layers))

    def forward(self, x: torch.Tensor, state: StageState | None = None) -> tuple[torch.Tensor, StageState | None]:
        """x [B, T, C_in] -> [B, T, C_out]; with a state, continue the stream it describes."""
        T = x.shape[1]
        if self.input_proj is not None:
            x = self.input_proj(x)
        offset = 0 if state is None else state.offset
        rope = rope_tables(offset, T, self.stage.head_dim, self.stage.max_period, x.device)
        caches: list[LayerCache | None] = []
        for i, layer in enumerate(self.transformer.layers):
            cache = None if state is None else state.caches[i]
            x, cache = layer(x, rope, offset, cache, keep_cache=state is not None)
            caches.append(cache)
        if self.output_proj is not None:
            x = self.output_proj(x)
        new_state = None if state is None else StageState(offset=offset + T, caches=caches)
        return x, new_state


class Patch(nn.Module):
    """No weights: folds `patch_size` steps into channels (down) or unfolds them (up).

    Channel order matches the released model: folded channel `c * patch_size + j` holds channel
    `c` of step `j` within the patch.
    """

    def __init__(self, patch_size: int, down: bool) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        h = self.patch_size
        if self.down:  # B, T*h, C -> B, T, C*h
            return x.reshape(B, T // h, h, C).transpose(2, 3).reshape(B, T // h, C * h)
        return x.reshape(B, T, C // h, h).transpose(2, 3).reshape(B, T * h, C // h)  # B, T, C -> B, T*h, C/h


# ----------------------------------------------------------------------------- quantizer


class _WeightNormParams(nn.Module):
    def __init__(self, out_dim: int, in_dim: int) -> None:
        super().__init__()
        self.original0 = nn.Parameter(torch.ones(out_dim, 1, 1))  # g
        self.original1 = nn.Parameter(torch.empty(out_dim, in_dim, 1))  # v


class _Parametrizations(nn.Module):
    def __init__(self, out_dim: int, in_dim: int) -> None:
        super().__init__()
        self.weight = _WeightNormParams(out_dim, in_dim)


class WeightNormPointwise(nn.Module):
    """A weight-normalized 1x1 convolution (a linear map over channels), weight = g * v / |v|.

    Stored as `parametrizations.weight.original0` (g) and `...original1` (v) plus `bias`, the
    names torch's weight-norm parametrization gives them in the released file.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.parametrizations = _Parametrizations(out_dim, in_dim)
        self.bias = nn.Parameter(torch.zeros(out_dim))

    def weight(self) -> torch.Tensor:
        g = self.parametrizations.weight.original0.float()
        v = self.parametrizations.weight.original1.float()
        w = v * (g / v.norm(dim=(1, 2), keepdim=True))
        return w[:, :, 0]  # out, in

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # B, T, in -> B, T, out (float32)
        return F.linear(x.float(), self.weight(), self.bias.float())


class CodebookQuantizer(nn.Module):
    """One stage of the residual quantizer: project down, pick the nearest code, project up."""

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int) -> None:
        super().__init__()
        if dim != codebook_dim:
            self.in_proj: nn.Module | None = WeightNormPointwise(dim, codebook_dim)
            self.out_proj: nn.Module | None = WeightNormPointwise(codebook_dim, dim)
        else:
            self.in_proj = self.out_proj = None
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def nearest(self, residual: torch.Tensor, normalized: bool) -> torch.Tensor:
        """residual [N, dim] float32 -> code indices [N]."""
        z = self.in_proj(residual) if self.in_proj is not None else residual.float()
        book = self.codebook.weight.float()
        if normalized:
            z, book = F.normalize(z), F.normalize(book)
        dist = z.pow(2).sum(1, keepdim=True) - 2 * z @ book.t() + book.pow(2).sum(1, keepdim=True).t()
        return (-dist).max(1)[1]

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [...] -> their contribution in the quantizer space [..., dim] (float32)."""
        z = F.embedding(codes, self.codebook.weight).float()
        return self.out_proj(z) if self.out_proj is not None else z


class ResidualQuantizer(nn.Module):
    def __init__(self, config: QuantizerConfig) -> None:
        super().__init__()
        self.config = config
        q = config
        self.input_proj = WeightNormPointwise(q.input_dim, q.rvq_dim) if q.input_dim != q.rvq_dim else None
        self.output_proj = WeightNormPointwise(q.rvq_dim, q.output_dim) if q.rvq_dim != q.output_dim else None
        self.quantizers = nn.ModuleList(
            [CodebookQuantizer(q.rvq_dim, q.codebook_size, q.codebook_dim) for _ in range(q.num_quantizers)]
        )

    def codebook_quantizers(self) -> list[CodebookQuantizer]:
        """The residual stages in order (typed: a ModuleList only promises plain Modules)."""
        return [q for q in self.quantizers if isinstance(q, CodebookQuantizer)]

    @torch.no_grad()
    def encode(self, x: torch.Tensor, n_codebooks: int) -> torch.Tensor:
        """x [B, T, input_dim] -> codes [B, K, T] (K = n_codebooks), residual quantization in float32."""
        B, T, _ = x.shape
        z = self.input_proj(x) if self.input_proj is not None else x.float()
        residual = z.reshape(B * T, -1).float()
        codes = []
        for quantizer in self.codebook_quantizers()[:n_codebooks]:
            idx = quantizer.nearest(residual, self.config.normalized)
            residual = residual - quantizer.embed(idx)
            codes.append(idx)
        if not codes:
            return torch.zeros(B, 0, T, dtype=torch.long, device=x.device)
        return torch.stack(codes, dim=0).reshape(len(codes), B, T).transpose(0, 1)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, T] -> [B, T, output_dim] float32 (sum of the first K codebooks' vectors)."""
        B, K, T = codes.shape
        out = torch.zeros(B, T, self.config.rvq_dim, device=codes.device, dtype=torch.float32)
        for k, quantizer in enumerate(self.codebook_quantizers()[:K]):
            out = out + quantizer.embed(codes[:, k])
        if self.output_proj is not None:
            out = self.output_proj(out)
        return out
