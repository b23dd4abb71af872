import copy

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add synchronization (badly so on a loaded 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def undecided(tiny_model):
    """The tiny model with random slot scores, so greedy decoding closes audio blocks at varied points."""
    from moss_model.generation import Generator

    tts = copy.copy(tiny_model)
    model = copy.deepcopy(tiny_model.model)
    c = model.config
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for token in (c.audio_assistant_gen_slot_token_id, c.audio_assistant_delay_slot_token_id):
            model.text_head[token, 1:] = torch.randn(model.text_head.shape[1] - 1, generator=g) * 0.6
        model.text_head[c.audio_assistant_delay_slot_token_id, 0] = 0.3
        model.text_head[c.audio_assistant_gen_slot_token_id, 0] = 0.6
    tts.model = model
    tts.generator = Generator(model, tiny_model.processor)
    return tts


def replay_on_cpu(step, device, memory_pool=None):
    """Stands in for CUDA graph capture, which needs a GPU this machine lacks: it runs the step
    (as a capture's warm-ups do, so a step that is not idempotent must be undone by the caller)
    and each 'replay' reruns it. The engine's steps read and write only its own buffers, so a
    value the engine failed to route through them shows up as a wrong result."""
    outputs = step()
    return step, outputs
