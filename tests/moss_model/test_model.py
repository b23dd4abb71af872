"""The backbone against transformers' Qwen3 on the same weights, and cached steps against a full forward."""

import torch

from moss_model.backbone import attention_mask
from moss_model.processor import SpeechRequest


def _transformers_qwen3(model):
    from transformers import Qwen3Config, Qwen3Model

    b = model.config.backbone
    config = Qwen3Config(
        vocab_size=b.vocab_size, hidden_size=b.hidden_size, num_hidden_layers=b.num_hidden_layers,
        num_attention_heads=b.num_attention_heads, num_key_value_heads=b.num_key_value_heads,
        intermediate_size=b.intermediate_size, head_dim=b.head_dim, rms_norm_eps=b.rms_norm_eps,
        rope_theta=b.rope_theta, max_position_embeddings=b.max_position_embeddings, attention_bias=False,
    )
    config._attn_implementation = "eager"
    reference = Qwen3Model(config).eval()
    weights = {key: tensor.detach() for key, tensor in model.language_model.checkpoint_tensors().items()}
    missing, unexpected = reference.load_state_dict(weights, strict=False)
    assert not unexpected and all("rotary" in key for key in missing)
    return reference


def _random_ids(model, B, T, seed):
    g = torch.Generator().manual_seed(seed)
    c = model.config
    text = torch.randint(0, c.backbone.vocab_size, (B, T, 1), generator=g)
    audio = torch.randint(0, c.audio_vocab_size + 1, (B, T, c.n_vq), generator=g)
    return torch.cat([text, audio], dim=-1)


def test_backbone_matches_transformers_qwen3(tiny_model):
    model = tiny_model.model
    reference = _transformers_qwen3(model)
    ids = _random_ids(model, 2, 37, seed=1)
    embeddings = model.embed(ids)
    with torch.no_grad():
        expected = reference(inputs_embeds=embeddings).last_hidden_state
        positions = torch.arange(37)[None].expand(2, 37)
        ours = model.language_model(embeddings, positions, attention_mask(torch.ones(2, 37, dtype=torch.bool), 0, 37))
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_embedding_is_the_sum_of_channel_embeddings(tiny_model):
    model = tiny_model.model
    ids = _random_ids(model, 1, 5, seed=2)
    tensors = model.checkpoint_tensors()
    expected = tensors["language_model.embed_tokens.weight"][ids[..., 0]]
    for i in range(model.config.n_vq):
        expected = expected + tensors[f"emb_ext.{i}.weight"][ids[..., i + 1]]
    torch.testing.assert_close(model.embed(ids), expected)
    logits = model(ids)
    hidden_to_head = tensors["lm_heads.7.weight"]
    assert logits.audio.shape[-2:] == (model.config.n_vq, model.config.audio_vocab_size + 1)
    assert torch.isneginf(logits.audio[..., -1]).all()
    assert hidden_to_head.shape[0] == model.config.audio_vocab_size + 1


def _prompts_then_random_tokens(tiny_model, seed):
    """A left-padded batch of two prompts, six random tokens to follow, and the full forward over both."""
    model, processor = tiny_model.model, tiny_model.processor
    prompts = [processor.build_prompt(SpeechRequest(text=t)) for t in ("A longer sentence than the other.", "Hi.")]
    batch = processor.pad_batch(prompts)
    extra = _random_ids(model, 2, 6, seed=seed)
    full_ids = torch.cat([batch.input_ids, extra], dim=1)
    full_mask = torch.cat([batch.attention_mask, torch.ones(2, 6, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        full = model(full_ids, full_mask)
    return batch, extra, full


def test_cached_incremental_logits_equal_full_forward(tiny_model):
    model = tiny_model.model
    batch, extra, full = _prompts_then_random_tokens(tiny_model, seed=3)
    with torch.no_grad():
        T = batch.input_ids.shape[1]
        cache = model.allocate_cache(2, T + 6)
        key_valid = torch.zeros(2, T + 6, dtype=torch.bool)
        key_valid[:, :T] = batch.attention_mask
        positions = (batch.attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        prefill = model.step(batch.input_ids, positions, key_valid, cache, 0, last_only=False)
        valid = batch.attention_mask
        torch.testing.assert_close(prefill.text[valid], full.text[:, :T][valid], rtol=1e-4, atol=1e-4)
        next_position = positions[:, -1] + 1
        for i in range(6):
            key_valid[:, T + i] = True
            step = model.step(extra[:, i : i + 1], next_position[:, None], key_valid, cache, T + i)
            next_position += 1
            torch.testing.assert_close(step.text[:, 0], full.text[:, T + i], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(step.audio[:, 0], full.audio[:, T + i], rtol=1e-4, atol=1e-4)


def test_left_padding_does_not_change_a_row(tiny_model):
    model, processor = tiny_model.model, tiny_model.processor
    short = processor.build_prompt(SpeechRequest(text="Hi."))
    long = processor.build_prompt(SpeechRequest(text="A much longer sentence to force padding."))
    alone = model(short.ids[None])
    batch = processor.pad_batch([long, short])
    together = model(batch.input_ids, batch.attention_mask)
    torch.testing.assert_close(together.text[1, -1], alone.text[0, -1], rtol=1e-4, atol=1e-4)


def test_decode_rows_equals_full_forward(tiny_model):
    """decode_rows writes each row's token into its own slot and attends over the whole window
    under a mask (the CUDA-graph path): slots not yet written hold garbage, and only the mask
    keeps them out. Rows have different lengths and sit in their own regions from slot 0."""
    model, processor = tiny_model.model, tiny_model.processor
    prompts = [processor.build_prompt(SpeechRequest(text=t)) for t in ("A longer sentence than the other.", "Hi.")]
    extra = _random_ids(model, 2, 6, seed=4)
    slot_ids = torch.tensor([model.config.audio_assistant_gen_slot_token_id, model.config.audio_assistant_delay_slot_token_id])
    lengths = [p.ids.shape[0] for p in prompts]
    window = max(lengths) + 6 + 25
    with torch.no_grad():
        cache = model.allocate_cache(2, window)
        cache.keys.normal_(0, 30.0)
        cache.values.normal_(0, 30.0)
        for row, prompt in enumerate(prompts):
            T = prompt.ids.shape[0]
            region = type(cache)(cache.keys[:, row : row + 1], cache.values[:, row : row + 1])
            model.hidden_states(prompt.ids[None], torch.arange(T)[None], torch.ones(1, T, dtype=torch.bool), region, 0)
        for i in range(6):
            slots = torch.tensor(lengths) + i
            hidden = model.decode_rows(extra[:, i : i + 1], slots, cache)
            step = model.step_logits(hidden, slot_ids)
            text = model.free_text_logits(hidden)
            for row, prompt in enumerate(prompts):
                full = model(torch.cat([prompt.ids, extra[row, : i + 1]])[None])
                torch.testing.assert_close(text[row], full.text[0, -1], rtol=1e-4, atol=1e-4)
                torch.testing.assert_close(step.slots[row], full.text[0, -1, slot_ids], rtol=1e-4, atol=1e-4)
                torch.testing.assert_close(step.audio[row], full.audio[0, -1], rtol=1e-4, atol=1e-4)


def test_rms_normalize_in_bfloat16_gives_the_float32_result_rounded_once():
    from moss_model.backbone import rms_normalize

    x = (torch.randn(3, 5, 256, generator=torch.Generator().manual_seed(0)) * 4).bfloat16()
    expected = (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)).bfloat16()
    assert torch.equal(rms_normalize(x, 1e-6), expected)
