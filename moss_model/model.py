"""The MOSS-TTS delay model: summed text+audio channel embeddings, a Qwen3 backbone, 1+n_vq heads.

The model computes logits and nothing else; sampling and the step loop live in `generation`.
The n_vq audio embeddings and heads are stored stacked ([n_vq, audio_vocab+1, hidden]) so a
step does one gather and one matmul for all codebooks; `checkpoint_tensors` maps them back to
the released per-codebook keys (`emb_ext.{i}.weight`, `lm_heads.{i+1}.weight`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from moss_model.backbone import EAGER_KERNELS, KVCache, LayerKernels, Qwen3Backbone, attention_mask
from moss_model.config import MossTTSConfig


@dataclass
class Logits:
    text: torch.Tensor  # B, T, text_vocab (or B, T, len(text_ids) when only some ids were scored)
    audio: torch.Tensor  # B, T, n_vq, audio_vocab+1 (the pad class is -inf)


class MossTTSDelayModel(nn.Module):
    def __init__(self, config: MossTTSConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.backbone.hidden_size
        audio_classes = config.audio_vocab_size + 1
        self.language_model = Qwen3Backbone(config.backbone)
        self.audio_embeddings = nn.Parameter(torch.empty(config.n_vq, audio_classes, hidden))
        self.text_head = nn.Parameter(torch.empty(config.backbone.vocab_size, hidden))
        self.audio_heads = nn.Parameter(torch.empty(config.n_vq, audio_classes, hidden))
        self.register_buffer("codebook_offsets", self._codebook_offsets(), persistent=False)

    def _codebook_offsets(self) -> torch.Tensor:
        return torch.arange(self.config.n_vq) * (self.config.audio_vocab_size + 1)

    def init_non_persistent_buffers(self) -> None:
        self.language_model.init_non_persistent_buffers()
        self.codebook_offsets = self._codebook_offsets().to(self.text_head.device)

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """Checkpoint key -> tensor (a view into our parameters) holding that weight."""
        tensors = {f"language_model.{k}": v for k, v in self.language_model.checkpoint_tensors().items()}
        tensors["lm_heads.0.weight"] = self.text_head
        for i in range(self.config.n_vq):
            tensors[f"emb_ext.{i}.weight"] = self.audio_embeddings[i]
            tensors[f"lm_heads.{i + 1}.weight"] = self.audio_heads[i]
        return tensors

    def init_random_weights(self, seed: int = 0, std: float = 0.02) -> None:
        """Random weights for tiny test checkpoints and benchmarks (norm weights stay at one)."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        with torch.no_grad():
            for name, tensor in self.checkpoint_tensors().items():
                if name.endswith("norm.weight"):
                    tensor.fill_(1.0)
                else:
                    tensor.normal_(0.0, std, generator=generator)

    @property
    def dtype(self) -> torch.dtype:
        return self.text_head.dtype

    @property
    def device(self) -> torch.device:
        return self.text_head.device

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids [B, T, 1+n_vq] -> embeddings [B, T, hidden]."""
        text = self.language_model.embed_tokens(input_ids[..., 0])
        flat_ids = input_ids[..., 1:] + self.codebook_offsets  # B, T, n_vq
        table = self.audio_embeddings.view(-1, self.audio_embeddings.shape[-1])
        audio = nn.functional.embedding(flat_ids, table).sum(dim=2)  # B, T, hidden
        return text + audio

    def heads(self, hidden: torch.Tensor, text_ids: torch.Tensor | None = None) -> Logits:
        """hidden [B, T, hidden] -> logits of the text head and every audio head.

        text_ids: score only these text tokens (inside audio the text channel chooses between
        two slots; the full 150k-way head is the largest matmul of a small-batch step).
        """
        text_weight = self.text_head if text_ids is None else self.text_head[text_ids]
        text = hidden @ text_weight.T
        B, T, H = hidden.shape
        audio = (hidden.reshape(B * T, H) @ self.audio_heads.view(-1, H).T).view(B, T, *self.audio_heads.shape[:2])
        audio[..., -1] = float("-inf")
        return Logits(text=text, audio=audio)

    def forward(
        self,
        input_ids: torch.Tensor,  # B, T, 1+n_vq
        attention_mask_2d: torch.Tensor | None = None,  # B, T (True = real token)
    ) -> Logits:
        """Full forward over a (left-padded) batch without a cache: logits at every position."""
        B, T, channels = input_ids.shape
        if channels != self.config.n_vq + 1:
            raise ValueError(f"input_ids must be [B, T, {self.config.n_vq + 1}], got {list(input_ids.shape)}")
        if attention_mask_2d is None:
            attention_mask_2d = torch.ones(B, T, dtype=torch.bool, device=input_ids.device)
        valid = attention_mask_2d.bool()
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
        mask = attention_mask(valid, 0, T)
        hidden = self.language_model(self.embed(input_ids), positions, mask)
        return self.heads(hidden)

    def step(
        self,
        input_ids: torch.Tensor,  # B, T, 1+n_vq
        positions: torch.Tensor,  # B, T
        key_valid: torch.Tensor,  # B, capacity (True where the cache slot holds a real token)
        cache: KVCache,
        start: int,
        last_only: bool = True,
        text_ids: torch.Tensor | None = None,
    ) -> Logits:
        """Run T new tokens that go into cache slots start..start+T-1; logits of the last (or all)."""
        T = input_ids.shape[1]
        mask = attention_mask(key_valid, start, T)
        hidden = self.language_model(self.embed(input_ids), positions, mask, cache, start)
        if last_only:
            hidden = hidden[:, -1:]
        return self.heads(hidden, text_ids)

    def decode_step(
        self,
        input_ids: torch.Tensor,  # B, 1, 1+n_vq
        positions: torch.Tensor,  # B, 1
        key_valid: torch.Tensor,  # B, capacity
        cache: KVCache,
        slot: torch.Tensor,  # [1] long
        text_ids: torch.Tensor | None = None,
        kernels: LayerKernels = EAGER_KERNELS,
    ) -> Logits:
        """One new token per row into cache slot `slot`, attending over the whole cache under a mask.

        The same logits as `step(..., start=slot)`, but every shape and address depends only on
        the batch and the cache, so a CUDA graph can capture the step and replay it. `kernels`
        may be the compiled layer halves (`backbone.compiled_layer_kernels()`).
        """
        hidden = self.language_model.decode(self.embed(input_ids), positions, key_valid, cache, slot, kernels)
        return self.heads(hidden, text_ids)

    def allocate_cache(self, batch: int, capacity: int) -> KVCache:
        return KVCache.allocate(self.config.backbone, batch, capacity, dtype=self.dtype, device=self.device)
