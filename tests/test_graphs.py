"""Fixed-shape one-token steps (``wgpt.graphs``): the step a CUDA graph replays, checked eagerly on
the CPU against the whole window, and captured and replayed on a GPU (``-m gpu``)."""

from __future__ import annotations

import pytest
import torch

from tests.test_generation import trained_like
from wgpt.cache import DecodeCache
from wgpt.generation import generate
from wgpt.graphs import FixedStep
from wgpt.model import GPT


def fixed_steps(model: GPT, idx: torch.Tensor, prompt: int, device: torch.device) -> tuple[torch.Tensor, DecodeCache, list]:
    """Logits of every position of ``idx``: a prefill of ``prompt`` tokens, then fixed-shape steps; and the graph of each step."""
    cache = DecodeCache()
    step = FixedStep(model, cache, idx.shape[0], device)
    steps, graphs = [], []
    with torch.inference_mode():
        steps.append(model(idx[:, :prompt], cache=cache)[0])
        for t in range(prompt, idx.shape[1]):
            steps.append(step(idx[:, t : t + 1]).unsqueeze(1).clone())  # a replay's logits live in the graph's memory
            graphs.append(step.graph)
    return torch.cat(steps, dim=1), cache, graphs


@pytest.mark.parametrize("wavelet", ["none", "haar", "learnable"])
@pytest.mark.parametrize("position", ["learned", "rope"])
@pytest.mark.parametrize("prompt", [1, 5])
def test_fixed_steps_equal_the_whole_window_at_every_position(wavelet, position, prompt):
    model = trained_like(wavelet, position=position)
    if wavelet == "learnable":  # off its one-hot start, so every scale's window start is read
        with torch.no_grad():
            for block in model.blocks:
                block.wavelet.mix.normal_()
    idx = torch.randint(0, 40, (3, 24))
    with torch.no_grad():
        full, _ = model(idx)
    steps, cache, _ = fixed_steps(model, idx, prompt, torch.device("cpu"))
    torch.testing.assert_close(steps, full, rtol=1e-5, atol=1e-5)
    assert cache.length == 24


def test_fixed_steps_are_exact_in_float64():
    """The masked whole-buffer attention and the indexed wavelet rows are the same arithmetic in fp64."""
    model = trained_like("learnable", position="rope").double()
    idx = torch.randint(0, 40, (2, 24))
    with torch.no_grad():
        full, _ = model(idx)
    steps, _, _ = fixed_steps(model, idx, 3, torch.device("cpu"))
    torch.testing.assert_close(steps, full, rtol=1e-12, atol=1e-12)


def test_a_fixed_step_before_any_prefill_is_refused():
    model = trained_like("haar")
    step = FixedStep(model, DecodeCache(), 1, torch.device("cpu"))
    with pytest.raises(ValueError, match="prefill"):
        step(torch.tensor([[1]]))


@pytest.mark.parametrize("wavelet", ["none", "haar", "learnable"])
def test_generation_with_fixed_steps_gives_the_tokens_of_the_other_paths(wavelet):
    """Past the context too: after each slide the prefill refills the same buffers and the steps go on."""
    model = trained_like(wavelet, context=16)
    uncached = generate(model, [1, 2, 3], 50, top_k=1, use_cache=False)
    assert generate(model, [1, 2, 3], 50, top_k=1, cuda_graph=True) == uncached
    sampled = generate(model, [4], 50, num_samples=3, seed=7, cuda_graph=True)
    assert sampled == generate(model, [4], 50, num_samples=3, seed=7, use_cache=True)


def cuda_or_skip() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return torch.device("cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("wavelet", ["haar", "learnable"])
def test_replayed_steps_match_the_whole_window_and_leave_the_generators_alone(wavelet):
    device = cuda_or_skip()
    model = trained_like(wavelet, position="rope").to(device)
    idx = torch.randint(0, 40, (3, 24), device=device)
    with torch.no_grad():
        full, _ = model(idx)
    cuda_state, cpu_state = torch.cuda.get_rng_state(), torch.get_rng_state()
    steps, _, graphs = fixed_steps(model, idx, 4, device)
    assert graphs[0] is not None and all(g is graphs[0] for g in graphs)  # captured once, replayed at every position
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state) and torch.equal(torch.get_rng_state(), cpu_state)
    torch.testing.assert_close(steps, full, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_replayed_generation_past_the_context_gives_the_uncached_tokens():
    device = cuda_or_skip()
    model = trained_like("haar", context=16).to(device)
    uncached = generate(model, [1, 2, 3], 60, top_k=1, use_cache=False)
    assert generate(model, [1, 2, 3], 60, top_k=1, cuda_graph=True) == uncached
    sampled = generate(model, [4], 60, num_samples=2, seed=3, cuda_graph=True)
    assert sampled == generate(model, [4], 60, num_samples=2, seed=3, use_cache=False)
