"""Prompt layout against hand-written expectations for generation, cloning and continuation."""

import pytest
import torch

from moss_model.processor import SpeechRequest

FIELDS_AFTER_REFERENCE = (
    "\n- Instruction:\nNone\n- Tokens:\n{tokens}\n- Quality:\nNone\n- Sound Event:\nNone\n"
    "- Ambient Sound:\nNone\n- Language:\n{language}\n- Text:\n{text}\n</user_inst>"
)


def decode(processor, ids):
    return processor.tokenizer.decode(ids[:, 0].tolist())


def codes(frames, n_vq, seed):
    return torch.randint(0, 1024, (frames, n_vq), generator=torch.Generator().manual_seed(seed))


def test_generation_prompt(tiny_model):
    p = tiny_model.processor
    prompt = p.build_prompt(SpeechRequest(text="Hello  world.\nNext line", tokens=50, language="English"))
    expected = (
        "<|im_start|>user\n<user_inst>\n- Reference(s):\nNone"
        + FIELDS_AFTER_REFERENCE.format(tokens=50, language="English", text="Hello world.。Next line")  # upstream joins lines with 。
        + "<|im_end|>\n<|im_start|>assistant\n"
    )
    assert decode(p, prompt.ids) == expected
    assert (prompt.ids[:, 1:] == 1024).all()
    assert prompt.prefix_frames == 0


def test_cloning_prompt_places_delayed_codes_on_user_slots(tiny_model):
    p, c = tiny_model.processor, tiny_model.config
    ref = codes(5, c.n_vq, 1)
    prompt = p.build_prompt(SpeechRequest(text="Hi.", reference=[ref]))
    slots = "<|audio_user_slot|>" * (5 + c.n_vq - 1)
    expected = (
        "<|im_start|>user\n<user_inst>\n- Reference(s):\n[S1]:\n<|audio_start|>" + slots + "<|audio_end|>"
        + FIELDS_AFTER_REFERENCE.format(tokens=None, language=None, text="Hi.")
        + "<|im_end|>\n<|im_start|>assistant\n"
    )
    assert decode(p, prompt.ids) == expected
    text = prompt.ids[:, 0]
    start = int((text == c.audio_start_token_id).nonzero())
    block = prompt.ids[start + 1 : start + 1 + 5 + c.n_vq - 1, 1:]
    for k in range(c.n_vq):  # codebook k of frame t sits k rows down
        for t in range(5):
            assert block[t + k, k] == ref[t, k]
    audio = prompt.ids[:, 1:].clone()
    audio[start + 1 : start + 1 + 5 + c.n_vq - 1] = 1024
    assert (audio == 1024).all(), "audio channels hold pad outside the block"
    assert int((block != 1024).sum()) == 5 * c.n_vq


def test_two_references_are_s1_and_s2(tiny_model):
    p, c = tiny_model.processor, tiny_model.config
    prompt = p.build_prompt(SpeechRequest(text="Hi.", reference=[codes(2, c.n_vq, 1), codes(3, c.n_vq, 2)]))
    text = decode(p, prompt.ids)
    assert "[S1]:\n<|audio_start|>" in text and "<|audio_end|>\n[S2]:\n<|audio_start|>" in text


def test_continuation_prompt_is_cut_after_the_last_generation_slot(tiny_model):
    p, c = tiny_model.processor, tiny_model.config
    ref, prefix = codes(4, c.n_vq, 3), codes(6, c.n_vq, 4)
    prompt = p.build_prompt(SpeechRequest(text="new words.", reference=[ref], prefix_codes=prefix, prefix_text="Old words. "))
    text = decode(p, prompt.ids)
    assert "- Text:\nOld words. new words.\n</user_inst>" in text
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n<|audio_start|>" + "<|audio_assistant_gen_slot|>" * 6)
    assert prompt.prefix_frames == 6
    tail = prompt.ids[-6:, 1:]
    for j in range(6):  # only the rows that remain of the delayed prefix
        for k in range(c.n_vq):
            assert tail[j, k] == (prefix[j - k, k] if j >= k else 1024)
    assert (prompt.ids[-7, 1:] == 1024).all()  # the <|audio_start|> row


def test_batch_is_left_padded(tiny_model):
    p, c = tiny_model.processor, tiny_model.config
    a = p.build_prompt(SpeechRequest(text="Short."))
    b = p.build_prompt(SpeechRequest(text="A rather longer sentence for padding."))
    batch = p.pad_batch([a, b])
    n = a.ids.shape[0]
    pad = batch.input_ids.shape[1] - n
    assert torch.equal(batch.input_ids[0, pad:], a.ids)
    assert (batch.input_ids[0, :pad, 0] == c.pad_token_id).all() and (batch.input_ids[0, :pad, 1:] == 1024).all()
    assert batch.attention_mask[0].tolist() == [False] * pad + [True] * n
    assert batch.attention_mask[1].all()


def test_bad_codes_are_rejected(tiny_model):
    p = tiny_model.processor
    with pytest.raises(ValueError, match=r"must be \[frames, 32\]"):
        p.build_prompt(SpeechRequest(text="x", reference=[torch.zeros(3, 8, dtype=torch.long)]))
    with pytest.raises(ValueError, match="must lie in 0..1023"):
        p.build_prompt(SpeechRequest(text="x", prefix_codes=torch.full((3, 32), 1024)))


def test_normalizer_keeps_controls():
    from moss_model.text_normalize import normalize_text

    text = "ni3 hao3 ,  see /ˈhɛloʊ/ [pause 1.5s] at https://example.com/a  b"
    assert normalize_text(text) == "ni3 hao3, see /ˈhɛloʊ/ [pause 1.5s] at https://example.com/a b"
    assert normalize_text("这 是　一 段文本。") == "这是一段文本。"
    assert normalize_text("这是Anthropic的npm包") == "这是 Anthropic 的 npm 包"
    assert normalize_text("真的假的？？？") == "真的假的？"
    assert normalize_text("第一行\n第二行") == "第一行。第二行"
    once = normalize_text("A -> B\u200b !!  ")
    assert once == normalize_text(once) == "A，B！"
