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


@dataclass
class StepLogits:
    """One position per row, as the generation engine samples them inside audio (the whole text
    head is `free_text_logits`, computed only for the rows that may sample free text)."""

    slots: torch.Tensor  # B, 2: the generation slot's and the delay slot's text scores
    audio: torch.Tensor  # B, n_vq, audio_vocab+1 (the pad class is -inf)


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
            valid = torch.ones(B, T, dtype=torch.bool, device=input_ids.device)
        else:
            valid = attention_mask_2d.bool()
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
        mask = attention_mask(valid, 0, T)
        hidden = self.language_model(self.embed(input_ids), positions, mask)
        return self.heads(hidden)

    def hidden_states(
        self,
        input_ids: torch.Tensor,  # B, T, 1+n_vq
        positions: torch.Tensor,  # B, T
        key_valid: torch.Tensor,  # B, capacity (True where the cache slot holds a real token)
        cache: KVCache,
        start: int,
    ) -> torch.Tensor:
        """Run T new tokens that go into cache slots start..start+T-1; their last hidden states [B, T, hidden]."""
        mask = attention_mask(key_valid, start, input_ids.shape[1])
        return self.language_model(self.embed(input_ids), positions, mask, cache, start)

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
        hidden = self.hidden_states(input_ids, positions, key_valid, cache, start)
        if last_only:
            hidden = hidden[:, -1:]
        return self.heads(hidden, text_ids)

    def step_logits(self, hidden: torch.Tensor, slot_ids: torch.Tensor) -> StepLogits:
        """hidden [B, hidden] -> the two slot scores (computed the same way on every step, so a
        row's choice inside audio never depends on what other rows needed) and every audio head."""
        slots = hidden @ self.text_head[slot_ids].T
        B, H = hidden.shape
        audio = (hidden @ self.audio_heads.view(-1, H).T).view(B, *self.audio_heads.shape[:2])
        audio[..., -1] = float("-inf")
        return StepLogits(slots=slots, audio=audio)

    def free_text_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [G, hidden] -> the whole text head [G, text_vocab]."""
        return hidden @ self.text_head.T

    def decode_rows(
        self,
        input_ids: torch.Tensor,  # B, 1, 1+n_vq
        slots: torch.Tensor,  # B long: each row's cache slot (and position) for this token
        cache: KVCache,  # a window holding every row's tokens so far
        kernels: LayerKernels = EAGER_KERNELS,
    ) -> torch.Tensor:
        """One new token per row into its own cache slot, attending over the row's slots 0..slot;
        the last hidden states [B, hidden] (heads: `step_logits`, `free_text_logits`).

        Every shape and address depends only on the batch and the window, so a CUDA graph can
        capture the step and replay it. `kernels` may be the compiled layer halves
        (`backbone.compiled_layer_kernels()`).
        """
        return self.language_model.decode(self.embed(input_ids), slots, cache, kernels)[:, 0]

    def allocate_cache(self, batch: int, capacity: int) -> KVCache:
        return KVCache.allocate(self.config.backbone, batch, capacity, dtype=self.dtype, device=self.device)
