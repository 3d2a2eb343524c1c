from __future__ import annotations

import pytest
import torch

from wgpt.cache import LayerCache
from wgpt.config import ModelConfig
from wgpt.model import GPT
from wgpt.wavelet import WaveletMix, coordinate_levels


def reference(h: torch.Tensor, context: int) -> torch.Tensor:
    """The definition: a direct mean over each coordinate's causal window."""
    split = h.shape[-1] // 2
    out = h.clone()
    for j, level in enumerate(coordinate_levels(h.shape[-1] - split, context).tolist()):
        w = 2**level
        for t in range(h.shape[1]):
            out[:, t, split + j] = h[:, max(0, t - w + 1) : t + 1, split + j].mean(dim=1)
    return out


def averaging_matrices(mix: WaveletMix, n: int) -> torch.Tensor:
    """Each modified coordinate's whole-window operation as a dense (n, n) matrix in fp64: (H, n, n).

    Row t averages the window that ends at t with weights 1/count, made here by exact division.
    """
    steps = torch.arange(n, dtype=torch.float64)
    lag = steps.unsqueeze(1) - steps  # (n, n): t - s

    def box(w: int) -> torch.Tensor:
        inside = (lag >= 0) & (lag < w)
        return inside / torch.minimum(steps + 1, torch.tensor(float(w))).unsqueeze(1)

    if mix.mix is None:
        return torch.stack([box(int(w)) for w in mix.windows[0]])
    boxes = torch.stack([box(int(w)) for w in mix.windows[0]])  # (S, n, n)
    return torch.einsum("hs,snm->hnm", mix.mix.detach().double(), boxes)


def test_levels_spread_evenly_over_the_modified_half():
    levels = coordinate_levels(64, 512)
    assert levels.min() == 1 and levels.max() == 9  # windows 2 .. 512
    counts = torch.bincount(levels)[1:]
    assert counts.max() - counts.min() <= 1  # about 7 coordinates per level
    assert torch.all(levels[1:] >= levels[:-1])


def test_fixed_matches_direct_window_means():
    torch.manual_seed(0)
    h = torch.randn(2, 64, 16, dtype=torch.float64)
    mix = WaveletMix(16, context=64).double()
    out = mix(h)
    torch.testing.assert_close(out, reference(h, 64))
    assert torch.equal(out[..., :8], h[..., :8])  # first half untouched


def test_sequence_shorter_than_context_averages_what_exists():
    h = torch.randn(1, 5, 8, dtype=torch.float64)
    out = WaveletMix(8, context=64).double()(h)
    torch.testing.assert_close(out, reference(h, 64))
    torch.testing.assert_close(out[0, 0], h[0, 0])  # step 0: a window of one


def test_learnable_equals_fixed_at_initialisation():
    torch.manual_seed(1)
    h = torch.randn(3, 40, 24)
    fixed = WaveletMix(24, context=64)(h)
    learned = WaveletMix(24, context=64, learnable=True)(h)
    torch.testing.assert_close(learned, fixed, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("learnable", [False, True])
def test_chunked_prefix_sums_equal_one_pass(learnable, dtype):
    """Decoding feeds positions a few at a time, or one per row; the result must not depend on the chunking.

    In bf16 the cache keeps float32 prefix sums, so chunks agree with the whole window to bf16's rounding.
    """
    torch.manual_seed(2)
    mix = WaveletMix(16, context=32, learnable=learnable)
    with torch.no_grad():
        if learnable:
            mix.mix.add_(0.1 * torch.randn_like(mix.mix))
        h = torch.randn(2, 32, 16).to(dtype)
        whole = mix(h)
        cache = LayerCache()
        parts = [mix(h[:, a:b].clone(), cache, a) for a, b in [(0, 7), (7, 8)]]
        parts += [mix(h[:, 8].clone(), cache, 8).unsqueeze(1)]  # one position per row, as (B, C): a decoding step
        parts += [mix(h[:, a:b].clone(), cache, a) for a, b in [(9, 20), (20, 32)]]
    assert cache.prefix.dtype == torch.float32
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, rtol=tol, atol=tol)


@pytest.mark.parametrize("wavelet", ["none", "haar", "learnable"])
def test_model_is_causal(wavelet):
    torch.manual_seed(3)
    model = GPT(ModelConfig(vocab_size=50, n_layer=2, n_head=2, d_model=32, d_ff=64, context=64, wavelet=wavelet)).eval()
    if wavelet == "learnable":  # move off the initial filters so the test covers trained ones too
        with torch.no_grad():
            for block in model.blocks:
                block.wavelet.mix.add_(0.2 * torch.rand_like(block.wavelet.mix))
    idx = torch.randint(0, 50, (2, 64))
    t = 37
    changed = idx.clone()
    changed[:, t] = (changed[:, t] + 1) % 50
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=0)
    assert not torch.allclose(a[:, t:], b[:, t:])


def test_parameter_counts_at_paper_size():
    sizes = {}
    for wavelet in ("none", "haar", "learnable"):
        cfg = ModelConfig(vocab_size=256, n_layer=10, n_head=8, d_model=128, d_ff=512, context=512, wavelet=wavelet)
        sizes[wavelet] = GPT(cfg).num_params()
    assert sizes["haar"] == sizes["none"]
    assert 0 < sizes["learnable"] - sizes["none"] <= 20_000


@pytest.mark.parametrize("learnable", [False, True])
def test_gradient_matches_finite_differences(learnable):
    mix = WaveletMix(12, context=32, learnable=learnable).double()
    h = torch.randn(2, 20, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: mix(x), (h,))
    if learnable:  # and the mixture weights' gradient, away from the one-hot start
        weights = (mix.mix.detach() + 0.3 * torch.randn_like(mix.mix)).requires_grad_()
        assert torch.autograd.gradcheck(lambda m: torch.func.functional_call(mix, {"mix": m}, (h.detach(),)), (weights,))


def test_learnable_filters_train():
    torch.manual_seed(4)
    model = GPT(ModelConfig(vocab_size=20, n_layer=1, n_head=2, d_model=16, d_ff=32, context=16, wavelet="learnable"))
    idx = torch.randint(0, 20, (4, 16))
    _, loss = model(idx, idx)
    loss.backward()
    assert model.blocks[0].wavelet.mix.grad.abs().sum() > 0


@pytest.mark.parametrize("learnable", [False, True])
def test_fp64_is_exact_to_fp64(learnable):
    """An fp64 model averages with fp64 weights, whole window and cached: equal to a dense fp64 matrix to 1e-12."""
    torch.manual_seed(5)
    mix = WaveletMix(14, context=64, learnable=learnable).double()
    if learnable:
        with torch.no_grad():
            mix.mix.add_(0.3 * torch.randn_like(mix.mix))
    h = torch.randn(3, 45, 14, dtype=torch.float64)
    expected = h.clone()
    expected[..., 7:] = torch.einsum("hts,bsh->bth", averaging_matrices(mix, 45), h[..., 7:])
    with torch.no_grad():
        whole = mix(h)
        cache = LayerCache()
        parts = [mix(h[:, :9].clone(), cache, 0), mix(h[:, 9].clone(), cache, 9).unsqueeze(1), mix(h[:, 10:].clone(), cache, 10)]
    torch.testing.assert_close(whole, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.cat(parts, dim=1), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("learnable", [False, True])
def test_buffers_have_row_major_strides(learnable):
    """DDP broadcasts the buffers at start-up and refuses a (H, 1) tensor with the transpose's strides (1, H)."""
    mix = WaveletMix(32, 64, learnable=learnable)
    for name, buf in mix.named_buffers():
        assert buf.stride() == torch.empty(buf.shape).stride(), name
