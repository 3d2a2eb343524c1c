"""The WaveletGPT multi-scale operation (Verma, "WaveletGPT", arXiv 2409.12924).

Applied to the output of every decoder block, on the residual stream. Half of the coordinates
pass unchanged; each coordinate ``i`` of the other half becomes the causal moving average of
window ``w(i) = 2**level(i)``, the Haar approximation coefficient at that level evaluated at
every step. Levels ``1 .. log2(context)`` are spread evenly over the modified half. Where fewer
than ``w(i)`` steps exist the average is over what exists.

Both variants work from one cumulative sum over time, so the cost is O(B*T*C) and the same code
serves training (the whole window at once) and cached decoding (new positions written into a
buffer of prefix sums that ``wgpt.cache.LayerCache`` holds), both through ``forward``. On CUDA
the whole window runs as one Triton kernel per pass (``wgpt.wavelet_triton``, registered as a
custom operator by ``wgpt.wavelet_ops``); ``KERNEL`` below says when.
"""

from __future__ import annotations

import importlib.util
import math
import os

import torch
from torch import Tensor, nn

from wgpt import wavelet_ops
from wgpt.cache import LayerCache, reusable

# Which whole-window implementation runs: "auto" takes the Triton kernels (wgpt.wavelet_triton) on
# CUDA tensors when Triton is installed and the torch code elsewhere; "triton" forces the kernels
# (on CPU tensors that needs TRITON_INTERPRET=1: the tests), "torch" the torch code. Read once, here.
KERNEL = os.environ.get("WGPT_WAVELET_KERNEL", "auto")
if KERNEL not in ("auto", "triton", "torch"):
    raise ValueError(f"WGPT_WAVELET_KERNEL must be auto, triton or torch, not {KERNEL!r}")
HAVE_TRITON = importlib.util.find_spec("triton") is not None


def fused(h: Tensor) -> bool:
    """Whether the whole-window pass over ``h`` runs the Triton kernels (see ``KERNEL``)."""
    if KERNEL == "auto":
        return h.is_cuda and HAVE_TRITON
    return KERNEL == "triton"


def _sum_dtype(dtype: torch.dtype) -> torch.dtype:
    """Prefix sums accumulate in at least fp32: bf16 sums would lose precision."""
    return torch.promote_types(dtype, torch.float32)


def coordinate_levels(n_modified: int, context: int) -> Tensor:
    """Level of each modified coordinate: ``1 .. floor(log2(context))`` in even, ascending runs."""
    n_levels = max(1, int(math.log2(context)))
    return 1 + torch.arange(n_modified) * n_levels // n_modified  # (H,)


class _HaarAverage(torch.autograd.Function):
    """Fixed Haar averages of a whole window (positions 0..T-1) with a hand-written backward.

    The gradient of a causal moving average is an anti-causal one, which is again a cumulative
    sum and a gather: ``grad_x[s] = C[min(s + w, T) - 1] - C[s - 1]`` with ``C = cumsum(g / count)``.
    This avoids autograd's scatter-add and zero-fills, about halving the operation's cost.
    """

    @staticmethod
    def forward(ctx, h: Tensor, split: int, lo_index: Tensor, hi_index: Tensor, inv_count: Tensor) -> Tensor:
        x = h[..., split:]
        bsz = x.shape[0]
        c = torch.cumsum(x, dim=1)  # (B, T, H)
        lo = c.gather(1, (lo_index - 1).clamp(min=0).expand(bsz, -1, -1))
        lo.mul_(lo_index > 0)  # windows that start at 0 subtract nothing
        out = h.clone()
        out[..., split:] = (c - lo).mul_(inv_count)
        ctx.save_for_backward(hi_index, inv_count)
        ctx.split = split
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        hi_index, inv_count = ctx.saved_tensors
        split = ctx.split
        c = torch.cumsum(grad[..., split:] * inv_count, dim=1)  # (B, T, H)
        out = grad.clone()
        mod = c.gather(1, (hi_index - 1).expand(c.shape[0], -1, -1))
        mod[:, 1:] -= c[:, :-1]
        out[..., split:] = mod
        return out, None, None, None, None


class _MixedAverage(torch.autograd.Function):
    """The learnable mixture over a whole window, with the window starts as slices, not gathers.

    With ``P`` the prefix sums (``P[t]`` = x[0] + .. + x[t]) and ``a[t] = sum_k mix[:, k] / count_k(t)``,
    the mixture of averages at windows ``w = 2**k`` is
    ``y[t] = a[t] * P[t] - sum_k mix[:, k] / w * P[t - w]``, the last term only where ``t >= w``:
    a window that has not yet filled adds its share of ``P[t]`` and subtracts nothing. Each scale is
    one fused multiply-add on a time slice that shrinks with ``w``; the backward is the transpose
    (the same slices on the gradient, then a reverse cumulative sum), and the gradient of ``mix``
    is ``sum P[t] * (g[t] / count_k(t) - g[t + w] / w)`` over batch and time. Autograd through one
    gather per scale would store S copies of (B, T, C/2) and scatter them back.
    """

    @staticmethod
    def forward(ctx, h: Tensor, mix: Tensor, split: int, weights: Tensor) -> Tensor:
        p = torch.cumsum(h[..., split:], dim=1, dtype=weights.dtype)  # (B, T, H)
        m = mix.to(weights.dtype)
        y = p * _contract(weights, m)  # a[t]
        for k, w in _filled_windows(m.shape[1], p.shape[1]):
            y[:, w:].addcmul_(p[:, :-w], m[:, k] / w, value=-1)
        ctx.save_for_backward(p, m, weights)
        ctx.split, ctx.mix_dtype = split, mix.dtype
        return torch.cat([h[..., :split], y.to(h.dtype)], dim=-1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        p, m, weights = ctx.saved_tensors
        g = grad[..., ctx.split :].to(p.dtype)  # (B, T, H)
        gp = g * _contract(weights, m)  # the gradient of each prefix sum
        for k, w in _filled_windows(m.shape[1], g.shape[1]):
            gp[:, :-w].addcmul_(g[:, w:], m[:, k] / w, value=-1)
        gx = gp.flip(1).cumsum(1).flip(1)  # x[s] enters every prefix sum from s on
        grad_mix = None
        if ctx.needs_input_grad[1]:
            grad_mix = _contract((g * p).sum(0).T, weights.T)  # (H, S): the a[t] * P[t] terms
            for k, w in _filled_windows(m.shape[1], g.shape[1]):
                grad_mix[:, k] -= torch.linalg.vecdot(p[:, :-w], g[:, w:], dim=1).sum(0) / w
            grad_mix = grad_mix.to(ctx.mix_dtype)
        return torch.cat([grad[..., : ctx.split], gx.to(grad.dtype)], dim=-1), grad_mix, None, None


def _contract(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b.T`` for the small (T, S) and (H, S) factors, as a broadcast product: BLAS threads on
    these few-KB matrices cost milliseconds per call on a busy 2-core machine, the product microseconds."""
    return (a.unsqueeze(1) * b).sum(-1)


def _filled_windows(n_scales: int, n: int) -> list[tuple[int, int]]:
    """(scale, window) of the windows ``2**k`` shorter than ``n`` steps: those that fill and start subtracting."""
    return [(k, 2**k) for k in range(n_scales) if 2**k < n]


class WaveletMix(nn.Module):
    """Causal multi-scale averaging of the second half of the coordinates.

    ``learnable=False`` is the paper's fixed Haar structure and has no parameters.
    ``learnable=True`` gives every modified coordinate a causal filter expressed in the Haar
    scaling basis: a learned mixture of its moving averages at windows ``1, 2, 4, .., 2**L``
    (L = log2(context)), which is a causal filter that is piecewise constant on dyadic spans.
    The mixture starts one-hot at the coordinate's own level, so at initialisation the output
    equals the fixed operation's exactly. Parameters: (C/2) * (L+1) per block, 6,400 for the
    paper's 10-layer, C=128, T=512 model.
    """

    def __init__(self, d_model: int, context: int, learnable: bool = False) -> None:
        super().__init__()
        self.split = d_model // 2  # coordinates [split, C) are modified
        n_mod = self.n_mod = d_model - self.split
        levels = coordinate_levels(n_mod, context)  # (H,)
        steps = torch.arange(context).unsqueeze(1)  # (T, 1)
        if learnable:
            n_scales = max(1, int(math.log2(context))) + 1  # windows 2**0 .. 2**L
            windows = 2 ** torch.arange(n_scales).unsqueeze(0)  # (1, S): one window per scale
            self.mix = nn.Parameter(nn.functional.one_hot(levels, n_scales).float())  # (H, S)
        else:
            windows = (2**levels).unsqueeze(0)  # (1, H): one window per coordinate
            self.mix = None
        # For step t the window covers prefix sums (lo, t+1]; lo clamps at the sequence start.
        lo_index = (steps + 1 - windows).clamp(min=0)
        self.register_buffer("lo_index", lo_index, persistent=False)
        # The fixed variant's starts as indices into a (B, (context+1)*H) view of a cache's prefix sums.
        self.register_buffer("lo_flat", None if learnable else lo_index * n_mod + torch.arange(n_mod), persistent=False)
        self.register_buffer("windows", windows, persistent=False)
        # Steps each average divides by. Integers, so that casting the module leaves them exact: the
        # weights 1/count are made in the dtype of the sums they scale (``_weights``).
        self.register_buffer("counts", torch.minimum(steps + 1, windows), persistent=False)
        # The Triton kernels' taps: a window and a weight per coordinate and scale, (H, S); the fixed
        # variant is one tap of weight 1 per coordinate.
        taps = windows.expand(n_mod, -1) if learnable else windows.T  # from (1, S) or (1, H)
        # Row-major strides, not the transpose's (1, H): contiguous() keeps those for a (H, 1) shape,
        # and DDP's start-up broadcast of the buffers refuses them.
        self.register_buffer("taps", taps.int().clone(memory_format=torch.contiguous_format), persistent=False)
        self.register_buffer("unit_mix", None if learnable else torch.ones(n_mod, 1), persistent=False)

    def forward(self, h: Tensor, cache: LayerCache | None = None, t0: int | Tensor = 0) -> Tensor:
        """Transform ``h`` (B, n, C) at positions ``t0 ..``: a whole window, or with a cache the
        positions after those it holds (inference only: the cache's prefix sums and ``h`` are
        written in place). ``t0`` as a (1,) tensor is a fixed-shape step (``_fixed_step``)."""
        if isinstance(t0, Tensor):
            return self._fixed_step(h, cache, t0)
        if cache is not None:
            return self._row_step(h, cache, t0) if h.dim() == 2 else self._step(h, cache, t0)
        if fused(h):
            return wavelet_ops.wavelet_taps(h, self.unit_mix if self.mix is None else self.mix, self.taps, self.split)
        if self.mix is not None:
            return _MixedAverage.apply(h, self.mix, self.split, self._weights(0, h.shape[1], _sum_dtype(h.dtype)))
        if h.dtype in (torch.float32, torch.float64):
            return self._whole_window(h)  # training's case, with the hand-written backward
        mod = h[..., self.split :]
        sums = torch.cumsum(mod.to(_sum_dtype(mod.dtype)), dim=1)
        prefix = torch.cat([sums.new_zeros(sums.shape[0], 1, sums.shape[2]), sums], dim=1)  # (B, T+1, H)
        return torch.cat([h[..., : self.split], self._averages(prefix, sums, 0).to(h.dtype)], dim=-1)

    def _averages(self, prefix: Tensor, hi: Tensor, t0: int) -> Tensor:
        """Averages (B, n, H) at positions ``t0 ..``, from their prefix sums ``hi`` and the rows before them."""
        bsz, n, n_mod = hi.shape
        lo_index, inv_count = self.lo_index[t0 : t0 + n], self._weights(t0, n, hi.dtype)
        if self.mix is None:
            lo = prefix.gather(1, lo_index.unsqueeze(0).expand(bsz, n, n_mod))  # (B, n, H)
            return (hi - lo) * inv_count
        out = torch.zeros_like(hi)  # cached decoding only (training takes _MixedAverage): a chunk or one position
        for k in range(self.mix.shape[1]):
            lo = prefix.index_select(1, lo_index[:, k])  # (B, n, H): same window for every coordinate
            out = out + (hi - lo) * inv_count[:, k : k + 1] * self.mix[:, k]
        return out

    def _step(self, h: Tensor, cache: LayerCache, t0: int) -> Tensor:
        """Cached decoding: fill prefix rows ``t0+1 .. t0+n``, then write the averages into ``h``.

        ``cache.prefix`` (B, context+1, H) holds the prefix sums of positions before ``t0`` in
        rows ``0 .. t0`` (row 0 is zero). One addition per new position and coordinate, one
        gather for the window starts (``lo_flat``, into the buffer's flat view): O(C) per position. One position per row, ``h`` (B, C),
        goes through ``_row_step``.
        """
        bsz, n = h.shape[:2]
        mod = h.narrow(2, self.split, self.n_mod)  # (B, n, H)
        prefix = self._buffer(h, cache, t0)
        before, sums = prefix.narrow(1, t0, 1), prefix.narrow(1, t0 + 1, n)
        torch.cumsum(mod, 1, dtype=sums.dtype, out=sums).add_(before)
        if self.mix is None:
            starts = cache.prefix_flat.index_select(1, self.lo_flat[t0 : t0 + n].flatten()).view(bsz, n, self.n_mod)
            torch.mul(sums - starts, self._weights(t0, n, sums.dtype), out=mod)
        else:
            mod.copy_(self._averages(prefix, sums, t0))
        return h

    def _row_step(self, h: Tensor, cache: LayerCache, t0: int) -> Tensor:
        """``_step`` for one position per row, ``h`` (B, C): the step of token-by-token decoding.

        Its views into the buffer are made at a position's first use and kept in the cache.
        """
        before, sums, flat, lo_flat, inv_count = (t0 and cache.prefix_rows[t0]) or self._row_views(h, cache, t0)
        mod = h.narrow(1, self.split, self.n_mod)  # (B, H)
        torch.add(before, mod, out=sums)
        if lo_flat is None:  # learnable
            mod.copy_(self._averages(cache.prefix, sums.unsqueeze(1), t0).squeeze(1))
        else:
            torch.mul(sums - flat.index_select(1, lo_flat), inv_count, out=mod)
        return h

    def _row_views(self, h: Tensor, cache: LayerCache, t0: int) -> tuple[Tensor | None, ...]:
        """Position ``t0``'s prefix rows (B, H), the buffer as (B, (context+1)*H) with the window starts in it, and the counts."""
        prefix = self._buffer(h, cache, t0)
        lo_flat = None if self.mix is not None else self.lo_flat.select(0, t0)
        views = (prefix.select(1, t0), prefix.select(1, t0 + 1), cache.prefix_flat, lo_flat, self._weights(t0, 1, prefix.dtype)[0])
        cache.prefix_rows[t0] = views
        return views

    def _fixed_step(self, h: Tensor, cache: LayerCache, t0: Tensor) -> Tensor:
        """``_row_step`` at a device-held position ``t0`` (1,): row reads and writes by index, no view that depends on it.

        The buffer is the one the pass from position 0 allocated; the learnable mixture reads its
        S window starts at once, (B, S, H), where ``_averages`` loops over them.
        """
        prefix, mod = cache.prefix, h.narrow(1, self.split, self.n_mod)  # (B, T+1, H), (B, H)
        sums = prefix.index_select(1, t0).squeeze(1) + mod  # (B, H), in the sums' dtype
        prefix.index_copy_(1, t0 + 1, sums.unsqueeze(1))
        inv_count = self.counts.index_select(0, t0).to(sums.dtype).reciprocal()  # (1, H), or (1, S)
        lo_index = self.lo_index.index_select(0, t0)  # (1, H), or (1, S): the rows before each window
        if self.mix is None:
            starts = prefix.gather(1, lo_index.unsqueeze(0).expand(h.shape[0], 1, self.n_mod)).squeeze(1)
            mod.copy_((sums - starts) * inv_count)
        else:
            starts = prefix.index_select(1, lo_index[0])  # (B, S, H)
            scale = inv_count[0].unsqueeze(1) * self.mix.T.to(sums.dtype)  # (S, H)
            mod.copy_(((sums.unsqueeze(1) - starts) * scale).sum(1))
        return h

    def _buffer(self, h: Tensor, cache: LayerCache, t0: int) -> Tensor:
        """The cache's prefix sums; the pass from position 0 allocates them unless the batch, dtype and device are those they have."""
        if t0:
            return cache.prefix
        acc = _sum_dtype(h.dtype)
        if not reusable(cache.prefix, h.shape[0], acc, h.device):
            cache.prefix = h.new_zeros(h.shape[0], self.lo_index.shape[0] + 1, self.n_mod, dtype=acc)
            cache.prefix_flat = cache.prefix.view(h.shape[0], -1)
            cache.prefix_rows = [None] * self.lo_index.shape[0]
        return cache.prefix

    def _whole_window(self, h: Tensor) -> Tensor:
        """Training's case: the fixed operation over positions 0..T-1, through ``_HaarAverage``."""
        n = h.shape[1]
        hi_index = (torch.arange(n, device=h.device).unsqueeze(1) + self.windows).clamp(max=n)  # (T, H)
        return _HaarAverage.apply(h, self.split, self.lo_index[:n], hi_index, self._weights(0, n, h.dtype))

    def _weights(self, t0: int, n: int, dtype: torch.dtype) -> Tensor:
        """The averaging weights 1/count of positions ``t0 .. t0+n-1``, made in ``dtype``: (n, H), or (n, S) when learnable.

        Made in the sums' own dtype, an fp64 run is exact to fp64 (fp32 weights would cap it near 3e-8).
        """
        return self.counts[t0 : t0 + n].to(dtype).reciprocal()
