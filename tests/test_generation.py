from __future__ import annotations

import pytest
import torch

from wgpt.cache import DecodeCache
from wgpt.config import ModelConfig
from wgpt.errors import WgptError
from wgpt.generation import generate, next_token, top_k_filter, top_p_filter, window_start
from wgpt.model import GPT


def trained_like(wavelet: str, context: int = 24, position: str = "learned") -> GPT:
    torch.manual_seed(5)
    model = GPT(ModelConfig(vocab_size=40, n_layer=2, n_head=2, d_model=32, d_ff=64, context=context, wavelet=wavelet, position=position))
    with torch.no_grad():  # larger weights than the init, so differences would show
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("wavelet", ["none", "haar", "learnable"])
@pytest.mark.parametrize("position", ["learned", "rope"])
@pytest.mark.parametrize("prompt", [5, 1])
def test_cached_logits_equal_uncached_at_every_position(wavelet, position, prompt):
    model = trained_like(wavelet, position=position)
    idx = torch.randint(0, 40, (3, 24))
    with torch.no_grad():
        full, _ = model(idx)
        cache = DecodeCache()
        first, _ = model(idx[:, :prompt], cache=cache)  # a prompt, then one token at a time
        steps = [first] + [model(idx[:, t : t + 1], cache=cache)[0] for t in range(prompt, 24)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("wavelet", ["none", "haar", "learnable"])
def test_chunks_after_cached_positions_and_a_reused_cache_match_the_whole_window(wavelet):
    """Chunks of several tokens after cached ones; then the same cache, reset, for a smaller batch."""
    model = trained_like(wavelet, position="rope")
    idx = torch.randint(0, 40, (3, 24))
    with torch.no_grad():
        full, _ = model(idx)
        cache = DecodeCache()
        chunks = [model(idx[:, a:b], cache=cache)[0] for a, b in [(0, 7), (7, 8), (8, 15), (15, 24)]]
        torch.testing.assert_close(torch.cat(chunks, dim=1), full, rtol=1e-5, atol=1e-5)
        cache.reset()
        again = [model(idx[:2, :10], cache=cache)[0]] + [model(idx[:2, t : t + 1], cache=cache)[0] for t in range(10, 24)]
    torch.testing.assert_close(torch.cat(again, dim=1), full[:2], rtol=1e-5, atol=1e-5)


def test_cached_decoding_refuses_autograd():
    """The layers write into the cache in place, which autograd could not follow: say so."""
    with pytest.raises(ValueError, match="autograd off"):
        trained_like("haar")(torch.tensor([[1, 2]]), cache=DecodeCache())


@pytest.mark.parametrize("wavelet", ["none", "haar", "learnable"])
def test_greedy_generation_past_the_context_is_the_same_with_and_without_cache(wavelet):
    model = trained_like(wavelet, context=16)
    cached = generate(model, [1, 2, 3], 40, top_k=1, use_cache=True)
    uncached = generate(model, [1, 2, 3], 40, top_k=1, use_cache=False)
    assert cached == uncached
    assert len(cached[0]) == 40


def test_window_slides_by_half_a_context():
    assert window_start(16, 0, 16) == 0  # a full window still fits
    assert window_start(17, 0, 16) == 9  # the last 8 tokens are kept and re-encoded
    assert window_start(20, 9, 16) == 9


def test_same_seed_same_samples_and_batch_rows_differ():
    model = trained_like("haar")
    a = generate(model, [4], 30, num_samples=3, seed=11)
    b = generate(model, [4], 30, num_samples=3, seed=11)
    assert a == b
    assert a[0] != a[1]


def test_top_k_keeps_exactly_k():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    kept = torch.isfinite(top_k_filter(logits, 2))
    assert kept.tolist() == [[False, True, False, True, False]]


def test_top_p_keeps_the_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(top_p_filter(probs.log(), 0.7))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.7 <= 0.8
    assert torch.isfinite(top_p_filter(probs.log(), 1.0)).all()


def test_sampling_follows_the_distribution():
    logits = torch.tensor([[0.0, 0.0, 2.0]]).repeat(4000, 1)
    gen = torch.Generator().manual_seed(0)
    draws = next_token(logits, 1.0, None, None, gen).flatten()
    share = (draws == 2).float().mean().item()
    expected = torch.softmax(torch.tensor([0.0, 0.0, 2.0]), 0)[2].item()
    assert abs(share - expected) < 0.03


@pytest.mark.parametrize("kwargs", [{"temperature": 0}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5}])
def test_bad_sampling_options_are_refused(kwargs):
    with pytest.raises(WgptError):
        generate(trained_like("none"), [1], 3, **kwargs)


def test_prompt_longer_than_context_is_refused():
    with pytest.raises(WgptError, match="longer than the model's context"):
        generate(trained_like("none", context=8), list(range(9)), 3)


def test_byte_samples_are_valid_utf8_of_the_exact_length():
    """An untrained byte model emits any byte; the text modality's constraint keeps UTF-8 valid."""
    from wgpt.modalities.text import TextModality

    torch.manual_seed(9)
    model = GPT(ModelConfig(vocab_size=256, n_layer=1, n_head=2, d_model=32, d_ff=64, context=32)).eval()
    with torch.no_grad():
        model.head.weight[0x80:].add_(0.5)  # favour non-ASCII bytes, so broken sequences would be likely
    modality = TextModality("bytes")
    for seed in range(5):
        ids = generate(model, [10], 50, seed=seed, allowed=modality.next_token_rule())[0]
        assert len(ids) == 50
        bytes(ids).decode("utf-8")


def test_positions_past_the_context_are_refused():
    model = trained_like("haar", context=8, position="rope")
    with torch.no_grad(), pytest.raises(ValueError, match="exceed the context"):
        cache = DecodeCache()
        model(torch.zeros(1, 8, dtype=torch.long), cache=cache)
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache)


def test_a_stop_ends_generation_with_a_prefix_of_the_same_seeds_samples():
    """``stop`` only ends early: the tokens before it are those a run without it gives."""
    model = trained_like("haar")
    whole = generate(model, [4], 40, num_samples=2, seed=7)
    seen = []

    def stop(new: torch.Tensor) -> bool:
        seen.append(new.shape)
        return new.shape[1] == 13

    early = generate(model, [4], 40, num_samples=2, seed=7, stop=stop)
    assert early == [row[:13] for row in whole] and seen[0] == (2, 1) and len(seen) == 13
