"""Prompts in, input ids out; generated rows back to frames.

The layout follows the released model exactly (see the spec): a chat with one user message
whose content is the `<user_inst>` template, and for continuation an assistant message holding
the prefix audio, cut right after its last generation slot. Audio blocks are written straight
into ids: tokenizers split text at added special tokens, so this equals tokenizing the block
as a string, without building strings of thousands of slot tokens.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from moss_model.config import MossTTSConfig
from moss_model.delay import apply_delay, split_at_pad_rows, undo_delay
from moss_model.text_normalize import normalize_text

USER_TEMPLATE = (
    "<user_inst>\n"
    "- Reference(s):\n{reference}\n"
    "- Instruction:\n{instruction}\n"
    "- Tokens:\n{tokens}\n"
    "- Quality:\n{quality}\n"
    "- Sound Event:\n{sound_event}\n"
    "- Ambient Sound:\n{ambient_sound}\n"
    "- Language:\n{language}\n"
    "- Text:\n{text}\n"
    "</user_inst>"
)
AUDIO = "\ue100"  # stands for one audio block while the text is being assembled


class TextTokenizer:
    """The checkpoint's Qwen2 BPE tokenizer: `tokenizer.json` read with the tokenizers library,
    or transformers' AutoTokenizer (no remote code) for folders that only have vocab/merges files."""

    def __init__(self, backend, fast: bool) -> None:
        self._backend = backend
        self._fast = fast

    @classmethod
    def from_folder(cls, folder: Path) -> TextTokenizer:
        if (folder / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            return cls(Tokenizer.from_file(str(folder / "tokenizer.json")), fast=True)
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(folder)), fast=False)

    def encode(self, text: str) -> list[int]:
        if self._fast:
            return self._backend.encode(text, add_special_tokens=False).ids
        return self._backend.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        if self._fast:
            return self._backend.decode(ids, skip_special_tokens=False)
        return self._backend.decode(ids)

    def token_to_id(self, token: str) -> int | None:
        if self._fast:
            return self._backend.token_to_id(token)
        return self._backend.convert_tokens_to_ids(token)


@dataclass
class SpeechRequest:
    """One utterance to synthesize.

    reference: codes [L, n_vq] of each reference speaker (voice cloning), or None.
    prefix_codes / prefix_text: continuation — audio the answer continues from, and its
    transcript, which is put in front of `text` as the model expects.
    tokens: the requested duration in frames (12.5 per second), or None.
    """

    text: str
    reference: list[torch.Tensor] | None = None
    prefix_codes: torch.Tensor | None = None
    prefix_text: str | None = None
    tokens: int | None = None
    language: str | None = None
    instruction: str | None = None
    quality: str | None = None
    sound_event: str | None = None
    ambient_sound: str | None = None


@dataclass
class Prompt:
    ids: torch.Tensor  # T, 1+n_vq
    prefix_frames: int  # frames of continuation audio at the end of ids (0 for plain generation)
    # Leading ids that do not depend on the text: the chat head through the last reference audio
    # block (0 without a reference). Prompts with the same voice share them, and the engine
    # computes and caches their KV once.
    shared_length: int = 0


@dataclass
class Batch:
    input_ids: torch.Tensor  # B, T, 1+n_vq (left padded)
    attention_mask: torch.Tensor  # B, T (bool)
    prefix_frames: list[int]


class MossTTSProcessor:
    def __init__(self, tokenizer, config: MossTTSConfig, normalize: bool = True) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.normalize = normalize
        self._check_special_tokens()

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, config: MossTTSConfig | None = None) -> MossTTSProcessor:
        folder = Path(folder)
        config = config or MossTTSConfig.from_folder(folder)
        return cls(TextTokenizer.from_folder(folder), config)

    def _check_special_tokens(self) -> None:
        # Only the chat tokens are written as text; audio tokens are placed by id from the config.
        expected = {"<|im_start|>": self.config.im_start_token_id, "<|im_end|>": self.config.im_end_token_id}
        for token, token_id in expected.items():
            found = self.tokenizer.token_to_id(token)
            if found != token_id:
                raise ValueError(f"the tokenizer maps {token} to {found}, but config.json says {token_id}")

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def user_content(self, request: SpeechRequest) -> str:
        text = request.text if request.prefix_text is None else request.prefix_text + request.text
        if self.normalize:
            text = normalize_text(text)
        references = request.reference or []
        reference = "\n".join(f"[S{i + 1}]:\n{AUDIO}" for i in range(len(references))) or "None"
        fields = {
            "reference": reference,
            "instruction": request.instruction,
            "tokens": request.tokens,
            "quality": request.quality,
            "sound_event": request.sound_event,
            "ambient_sound": request.ambient_sound,
            "language": request.language,
            "text": text,
        }
        content = USER_TEMPLATE
        for name, value in fields.items():
            content = content.replace("{" + name + "}", str(value))
        return content

    def build_prompt(self, request: SpeechRequest) -> Prompt:
        references = list(request.reference or [])
        for codes in references + ([request.prefix_codes] if request.prefix_codes is not None else []):
            self._check_codes(codes)
        user = f"<|im_start|>user\n{self.user_content(request)}<|im_end|>\n"
        parts = self._ids_with_audio(user, references, assistant=False)
        # parts alternate text, audio block, text, ...: the shared head ends with the last block.
        shared_length = sum(int(part.shape[0]) for part in parts[: 2 * len(references)])
        parts.append(self._text_rows(self.encode_text("<|im_start|>assistant\n")))
        if request.prefix_codes is None:
            return Prompt(torch.cat(parts), prefix_frames=0, shared_length=shared_length)
        prefix = request.prefix_codes
        block = self._audio_block(prefix, assistant=True)
        # Continuation: keep the block up to its last generation slot (no delay slots, no end).
        parts.append(block[: 1 + prefix.shape[0]])
        return Prompt(torch.cat(parts), prefix_frames=int(prefix.shape[0]), shared_length=shared_length)

    def _check_codes(self, codes: torch.Tensor) -> None:
        n_vq = self.config.n_vq
        if codes.ndim != 2 or codes.shape[1] != n_vq:
            raise ValueError(f"audio codes must be [frames, {n_vq}], got {list(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.config.audio_vocab_size):
            raise ValueError(f"audio codes must lie in 0..{self.config.audio_vocab_size - 1}")

    def _ids_with_audio(self, text: str, audios: list[torch.Tensor], assistant: bool) -> list[torch.Tensor]:
        pieces = text.split(AUDIO)
        if len(pieces) != len(audios) + 1:
            raise ValueError(f"{len(pieces) - 1} audio placeholders for {len(audios)} audio clips")
        parts = [self._text_rows(self.encode_text(pieces[0]))]
        for codes, piece in zip(audios, pieces[1:]):
            parts.append(self._audio_block(codes, assistant))
            parts.append(self._text_rows(self.encode_text(piece)))
        return parts

    def _text_rows(self, token_ids: list[int]) -> torch.Tensor:
        rows = torch.full((len(token_ids), 1 + self.config.n_vq), self.config.audio_pad_code, dtype=torch.long)
        rows[:, 0] = torch.tensor(token_ids, dtype=torch.long)
        return rows

    def _audio_block(self, codes: torch.Tensor, assistant: bool) -> torch.Tensor:
        """<|audio_start|> slot x L slot' x (n_vq-1) <|audio_end|>, delayed codes on the slot rows."""
        c = self.config
        frames = int(codes.shape[0])
        if frames == 0:
            return self._text_rows([c.audio_start_token_id, c.audio_end_token_id])
        gen = c.audio_assistant_gen_slot_token_id if assistant else c.audio_user_slot_token_id
        delay = c.audio_assistant_delay_slot_token_id if assistant else c.audio_user_slot_token_id
        text = [c.audio_start_token_id] + [gen] * frames + [delay] * (c.n_vq - 1) + [c.audio_end_token_id]
        rows = self._text_rows(text)
        rows[1:-1, 1:] = apply_delay(codes.long(), c.audio_pad_code)
        return rows

    def pad_batch(self, prompts: list[Prompt]) -> Batch:
        """Left-pad prompts to one length: pad token on the text channel, pad code on the audio channels."""
        length = max(p.ids.shape[0] for p in prompts)
        channels = 1 + self.config.n_vq
        input_ids = torch.full((len(prompts), length, channels), self.config.audio_pad_code, dtype=torch.long)
        input_ids[..., 0] = self.config.pad_token_id
        mask = torch.zeros(len(prompts), length, dtype=torch.bool)
        for row, prompt in enumerate(prompts):
            n = prompt.ids.shape[0]
            input_ids[row, length - n :] = prompt.ids
            mask[row, length - n :] = True
        return Batch(input_ids, mask, [p.prefix_frames for p in prompts])

    def __call__(self, requests: list[SpeechRequest]) -> Batch:
        return self.pad_batch([self.build_prompt(r) for r in requests])

    def frames_from_rows(self, prompt_tail: torch.Tensor, generated: torch.Tensor, prefix_frames: int) -> list[torch.Tensor]:
        """Audio runs [F, n_vq] of an answer.

        prompt_tail: the prompt rows of the open continuation block, from its <|audio_start|>
        (empty for plain generation); generated: the generated rows [G, 1+n_vq].
        Continuation frames that were given in the prompt are left out.
        """
        rows = torch.cat([prompt_tail, generated])[:, 1:]
        if rows.shape[0] < self.config.n_vq:
            return []
        frames = undo_delay(rows)
        if prefix_frames:
            frames = frames[1 + prefix_frames :]  # the <|audio_start|> row, then the given frames
        return split_at_pad_rows(frames, self.config.audio_pad_code)
