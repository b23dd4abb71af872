"""The Qwen3 decoder that carries the delay model, with a preallocated (static) KV cache.

The weights load under the released checkpoint's names (`embed_tokens`, `layers.N.self_attn.q_proj`,
`...q_norm`, `layers.N.mlp.gate_proj`, `input_layernorm`, `norm`, ...) with a strict check:
`checkpoint_tensors()` maps each name to a view of our parameters. The q/k/v projections are
stored as one matrix and gate/up as another, because a decode step at small batch is a long
chain of small kernels and every launch counts. The numerics follow the transformers Qwen3
implementation (float32 RMS statistics, RoPE with rotate-half); tests compare the two on the
same random weights.

Two ways to run the decoder: `forward` for any number of new tokens with attention over the
cache filled so far (prefill chunks), and `decode` for one token per row, each row writing its
own cache slot and attending over every slot of the window it is given under a mask, so that
every shape and address is fixed and the step can be captured as a CUDA graph.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from moss_model.config import BackboneConfig


def rms_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x over its root mean square, returned in x's dtype.

    Qwen3 normalises in float32 and casts back before applying the weight. PyTorch's rms_norm
    computes half types in float32 internally, so it gives those bits in one kernel instead of
    three (tests check it against the explicit float32 computation, on CPU and on CUDA).
    """
    return F.rms_norm(x, (x.shape[-1],), eps=eps)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * rms_normalize(x, self.eps)


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

    def window(self, length: int) -> KVCache:
        """The first `length` slots of every layer, as views (writes go to this cache)."""
        return KVCache(self.keys[:, :, :, :length], self.values[:, :, :, :length])


def apply_rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE. Rolling the halves and using sin with its first half negated gives
    exactly rotate_half(x) * sin, in two kernels fewer."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


def attention_inputs(
    x: torch.Tensor,  # B, T, hidden: the layer's input
    norm_weight: torch.Tensor,
    qkv_weight: torch.Tensor,
    qkv_bias: torch.Tensor | None,
    q_norm_weight: torch.Tensor,
    k_norm_weight: torch.Tensor,
    cos: torch.Tensor,  # B, T, 1, head_dim
    signed_sin: torch.Tensor,
    eps: float,
    heads: int,
    kv_heads: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input norm and q/k/v projection: q [B, T, heads, D], k and v [B, T, kv_heads, D], q and k
    normed and rotated. q and k heads are normed and rotated together, one chain of kernels."""
    B, T, _ = x.shape
    h = norm_weight * rms_normalize(x, eps)
    qkv = F.linear(h, qkv_weight, qkv_bias).view(B, T, heads + 2 * kv_heads, -1)
    qk, v = qkv.split([heads + kv_heads, kv_heads], dim=2)
    qk_weight = torch.cat((q_norm_weight.expand(heads, -1), k_norm_weight.expand(kv_heads, -1)))
    qk = apply_rope(qk_weight * rms_normalize(qk, eps), cos, signed_sin)
    q, k = qk.split([heads, kv_heads], dim=2)
    return q, k, v


def layer_output(
    x: torch.Tensor,  # B, T, hidden: the layer's input
    attention: torch.Tensor,  # B, T, heads * D: attention before the output projection
    o_weight: torch.Tensor,
    o_bias: torch.Tensor | None,
    norm_weight: torch.Tensor,
    gate_up_weight: torch.Tensor,
    down_weight: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """Output projection and residual, then the post-attention norm, the MLP and its residual."""
    x = x + F.linear(attention, o_weight, o_bias)
    gate, up = F.linear(norm_weight * rms_normalize(x, eps), gate_up_weight).chunk(2, dim=-1)
    return x + F.linear(F.silu(gate) * up, down_weight)


@dataclass(frozen=True)
class LayerKernels:
    """The two halves of a layer around attention, as plain functions of tensors: torch.compile
    can then fuse each half once for every layer (see `compiled_layer_kernels`)."""

    attention_inputs: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = attention_inputs
    layer_output: Callable[..., torch.Tensor] = layer_output


EAGER_KERNELS = LayerKernels()


@functools.cache
def compiled_layer_kernels() -> LayerKernels:
    """The layer halves compiled with torch.compile (fused elementwise chains, fewer launches).

    Only the fixed-shape decode step uses them: its attention stays outside, because a
    compiled in-place cache write becomes a copy of the whole cache.
    """
    return LayerKernels(torch.compile(attention_inputs, fullgraph=True), torch.compile(layer_output, fullgraph=True))


class Attention(nn.Module):
    """The attention weights, and attention over the KV cache (the projections are in `attention_inputs`)."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        bias = config.attention_bias
        self.qkv_proj = nn.Linear(config.hidden_size, (self.heads + 2 * self.kv_heads) * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.heads * self.head_dim, config.hidden_size, bias=bias)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        sizes = [self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim]
        tensors: dict[str, torch.Tensor] = dict(
            zip(("q_proj.weight", "k_proj.weight", "v_proj.weight"), self.qkv_proj.weight.split(sizes))
        )
        if self.qkv_proj.bias is not None:
            tensors.update(zip(("q_proj.bias", "k_proj.bias", "v_proj.bias"), self.qkv_proj.bias.split(sizes)))
        tensors["o_proj.weight"] = self.o_proj.weight
        if self.o_proj.bias is not None:
            tensors["o_proj.bias"] = self.o_proj.bias
        tensors["q_norm.weight"] = self.q_norm.weight
        tensors["k_norm.weight"] = self.k_norm.weight
        return tensors

    def attend(
        self,
        q: torch.Tensor,  # B, T, heads, D
        k: torch.Tensor,  # B, T, kv_heads, D
        v: torch.Tensor,
        mask: torch.Tensor,  # B, 1, T, S (bool, True = attend)
        cache_keys: torch.Tensor | None,  # B, kv_heads, capacity, head_dim
        cache_values: torch.Tensor | None,
        start: int,
    ) -> torch.Tensor:
        """T new tokens into cache slots start..start+T-1, attending over the slots filled so far."""
        B, T = q.shape[:2]
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if cache_keys is not None:
            assert cache_values is not None  # a cache has both keys and values
            end = start + T
            cache_keys[:, :, start:end] = k
            cache_values[:, :, start:end] = v
            k = cache_keys[:, :, :end]
            v = cache_values[:, :, :end]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.heads != self.kv_heads)
        return out.transpose(1, 2).reshape(B, T, self.heads * self.head_dim)

    def attend_rows(
        self,
        q: torch.Tensor,  # B, 1, heads, D
        k: torch.Tensor,  # B, 1, kv_heads, D
        v: torch.Tensor,
        additive_mask: torch.Tensor,  # B, 1, 1, window (0 = attend, -inf = not)
        cache_keys: torch.Tensor,  # B, kv_heads, window, head_dim
        cache_values: torch.Tensor,
        slots: torch.Tensor,  # B long: each row's cache slot for its new token
    ) -> torch.Tensor:
        """One new token per row into that row's own cache slot, attending over the window under the mask."""
        B = q.shape[0]
        index = slots[:, None, None, None].expand(B, self.kv_heads, 1, self.head_dim)
        cache_keys.scatter_(2, index, k.transpose(1, 2))
        cache_values.scatter_(2, index, v.transpose(1, 2))
        # Grouped-query attention without repeating the cache: the query heads that share a kv
        # head (h // group) become `group` queries of that head.
        grouped = q.reshape(B, self.kv_heads, self.heads // self.kv_heads, self.head_dim)
        out = F.scaled_dot_product_attention(grouped, cache_keys, cache_values, attn_mask=additive_mask)
        return out.reshape(B, 1, self.heads * self.head_dim)


class MLP(nn.Module):
    """The MLP weights (the computation is in `layer_output`)."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.intermediate_size = config.intermediate_size
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        gate, up = self.gate_up_proj.weight.split(self.intermediate_size)
        return {"gate_proj.weight": gate, "up_proj.weight": up, "down_proj.weight": self.down_proj.weight}


class DecoderLayer(nn.Module):
    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.eps = config.rms_norm_eps
        self.self_attn = Attention(config)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"self_attn.{k}": v for k, v in self.self_attn.checkpoint_tensors().items()}
        tensors.update({f"mlp.{k}": v for k, v in self.mlp.checkpoint_tensors().items()})
        tensors["input_layernorm.weight"] = self.input_layernorm.weight
        tensors["post_attention_layernorm.weight"] = self.post_attention_layernorm.weight
        return tensors

    def _attention_inputs(self, kernels: LayerKernels, x, cos, signed_sin):
        a = self.self_attn
        return kernels.attention_inputs(
            x, self.input_layernorm.weight, a.qkv_proj.weight, a.qkv_proj.bias, a.q_norm.weight, a.k_norm.weight,
            cos, signed_sin, self.eps, a.heads, a.kv_heads,
        )

    def _output(self, kernels: LayerKernels, x, attention):
        return kernels.layer_output(
            x, attention, self.self_attn.o_proj.weight, self.self_attn.o_proj.bias,
            self.post_attention_layernorm.weight, self.mlp.gate_up_proj.weight, self.mlp.down_proj.weight, self.eps,
        )

    def forward(self, x, cos, signed_sin, mask, cache_keys, cache_values, start: int) -> torch.Tensor:
        q, k, v = self._attention_inputs(EAGER_KERNELS, x, cos, signed_sin)
        attention = self.self_attn.attend(q, k, v, mask, cache_keys, cache_values, start)
        return self._output(EAGER_KERNELS, x, attention)

    def decode(
        self, x, cos, signed_sin, additive_mask, cache_keys, cache_values, slots: torch.Tensor, kernels: LayerKernels
    ) -> torch.Tensor:
        q, k, v = self._attention_inputs(kernels, x, cos, signed_sin)
        attention = self.self_attn.attend_rows(q, k, v, additive_mask, cache_keys, cache_values, slots)
        return self._output(kernels, x, attention)


class Qwen3Backbone(nn.Module):
    """Embeddings in, last hidden state out; the caller owns the heads."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.register_buffer("inv_freq", self._inverse_frequencies(), persistent=False)

    def decoder_layers(self) -> list[DecoderLayer]:
        """The layers in order (typed: a ModuleList only promises plain Modules)."""
        return [layer for layer in self.layers if isinstance(layer, DecoderLayer)]

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """Released checkpoint key (under `language_model.`) -> the tensor, a view of our parameters."""
        tensors = {"embed_tokens.weight": self.embed_tokens.weight}
        for index, layer in enumerate(self.decoder_layers()):
            tensors.update({f"layers.{index}.{k}": v for k, v in layer.checkpoint_tensors().items()})
        tensors["norm.weight"] = self.norm.weight
        return tensors

    def _inverse_frequencies(self) -> torch.Tensor:
        dim = self.config.head_dim
        exponents = torch.arange(0, dim, 2, dtype=torch.int64).to(dtype=torch.float32) / dim
        return 1.0 / (self.config.rope_theta**exponents)

    def init_non_persistent_buffers(self) -> None:
        device = self.embed_tokens.weight.device
        self.inv_freq = self._inverse_frequencies().to(device)

    def rotary(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin (see `apply_rope`) for integer positions [B, T], shaped [B, T, 1, head_dim]."""
        freqs = positions.float()[..., None] * self.inv_freq  # B, T, head_dim/2
        cos = torch.cat((freqs, freqs), dim=-1).cos()
        sin = freqs.sin()
        signed_sin = torch.cat((-sin, sin), dim=-1)
        return cos.to(dtype)[:, :, None], signed_sin.to(dtype)[:, :, None]

    def forward(
        self,
        embeddings: torch.Tensor,  # B, T, hidden
        positions: torch.Tensor,  # B, T
        mask: torch.Tensor,  # B, 1, T, S
        cache: KVCache | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        cos, signed_sin = self.rotary(positions, embeddings.dtype)
        x = embeddings
        for index, layer in enumerate(self.decoder_layers()):
            cache_keys = cache.keys[index] if cache is not None else None
            cache_values = cache.values[index] if cache is not None else None
            x = layer(x, cos, signed_sin, mask, cache_keys, cache_values, start)
        return self.norm(x)

    def decode(
        self,
        embeddings: torch.Tensor,  # B, 1, hidden
        slots: torch.Tensor,  # B long: each row's cache slot for its new token, which is also its position
        cache: KVCache,  # a window of the cache: every row's tokens so far lie in it, from slot 0
        kernels: LayerKernels = EAGER_KERNELS,
    ) -> torch.Tensor:
        """One new token per row, attending over the row's own slots 0..slot: shapes depend only on B and the window.

        Each row owns its cache region from slot 0 (no left padding), so a row's keys sit at the
        same places whatever else is in the batch, and slots after its own are masked out.
        """
        positions = slots[:, None]
        cos, signed_sin = self.rotary(positions, embeddings.dtype)
        window = cache.capacity
        visible = torch.arange(window, device=slots.device)[None, :] <= positions  # B, window
        additive_mask = torch.zeros(visible.shape, dtype=embeddings.dtype, device=visible.device)
        additive_mask = additive_mask.masked_fill_(~visible, float("-inf"))[:, None, None]
        x = embeddings
        for index, layer in enumerate(self.decoder_layers()):
            x = layer.decode(x, cos, signed_sin, additive_mask, cache.keys[index], cache.values[index], slots, kernels)
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
