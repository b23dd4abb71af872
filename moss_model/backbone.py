"""The Qwen3 decoder that carries the delay model, with a preallocated (static) KV cache.

Parameter names follow the released checkpoint (`embed_tokens`, `layers.N.self_attn.q_proj`,
`...q_norm`, `layers.N.mlp.gate_proj`, `input_layernorm`, `norm`, ...), so the weights load
with a strict check. The numerics follow the transformers Qwen3 implementation (float32 RMS
statistics, RoPE with rotate-half); tests compare the two on the same random weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from moss_model.config import BackboneConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


@dataclass
class KVCache:
    """Keys and values of every layer, allocated once: [layers, B, kv_heads, capacity, head_dim]."""

    keys: torch.Tensor
    values: torch.Tensor

    @classmethod
    def allocate(
        cls, config: BackboneConfig, batch: int, capacity: int, *, dtype: torch.dtype, device: torch.device
    ) -> KVCache:
        shape = (config.num_hidden_layers, batch, config.num_key_value_heads, capacity, config.head_dim)
        return cls(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, self.heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.heads * self.head_dim, config.hidden_size, bias=bias)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)

    def forward(
        self,
        x: torch.Tensor,  # B, T, hidden
        cos: torch.Tensor,  # B, 1, T, head_dim
        sin: torch.Tensor,
        mask: torch.Tensor,  # B, 1, T, S (bool, True = attend)
        cache_keys: torch.Tensor | None,  # B, kv_heads, capacity, head_dim
        cache_values: torch.Tensor | None,
        start: int,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(B, T, self.heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(B, T, self.kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache_keys is not None:
            end = start + T
            cache_keys[:, :, start:end] = k
            cache_values[:, :, start:end] = v
            k = cache_keys[:, :, :end]
            v = cache_values[:, :, :end]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.heads != self.kv_heads)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.self_attn = Attention(config)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, cos, sin, mask, cache_keys, cache_values, start: int) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache_keys, cache_values, start)
        return x + self.mlp(self.post_attention_layernorm(x))


class Qwen3Backbone(nn.Module):
    """Embeddings in, last hidden state out; the caller owns the heads."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.register_buffer("inv_freq", self._inverse_frequencies(), persistent=False)

    def _inverse_frequencies(self) -> torch.Tensor:
        dim = self.config.head_dim
        exponents = torch.arange(0, dim, 2, dtype=torch.int64).to(dtype=torch.float32) / dim
        return 1.0 / (self.config.rope_theta**exponents)

    def init_non_persistent_buffers(self) -> None:
        device = self.embed_tokens.weight.device
        self.inv_freq = self._inverse_frequencies().to(device)

    def rotary(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for integer positions [B, T], shaped [B, 1, T, head_dim]."""
        freqs = positions.float()[..., None] * self.inv_freq  # B, T, head_dim/2
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos().to(dtype)[:, None], angles.sin().to(dtype)[:, None]

    def forward(
        self,
        embeddings: torch.Tensor,  # B, T, hidden
        positions: torch.Tensor,  # B, T
        mask: torch.Tensor,  # B, 1, T, S
        cache: KVCache | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        cos, sin = self.rotary(positions, embeddings.dtype)
        x = embeddings
        for index, layer in enumerate(self.layers):
            cache_keys = cache.keys[index] if cache is not None else None
            cache_values = cache.values[index] if cache is not None else None
            x = layer(x, cos, sin, mask, cache_keys, cache_values, start)
        return self.norm(x)


def attention_mask(key_valid: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """Boolean SDPA mask [B, 1, length, start+length] for queries at cache slots start..start+length-1.

    A query sees earlier valid keys. A padding query also sees itself, so that no softmax row
    is empty (an empty row gives NaN, and NaN in a padded value row would leak through 0 weights).
    """
    end = start + length
    query_slots = torch.arange(start, end, device=key_valid.device)[:, None]
    key_slots = torch.arange(end, device=key_valid.device)[None, :]
    causal = key_slots <= query_slots  # length, end
    allowed = causal[None] & key_valid[:, None, :end]
    allowed |= (key_slots == query_slots)[None]
    return allowed[:, None]
