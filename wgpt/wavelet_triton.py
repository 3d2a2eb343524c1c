"""Triton kernels for the wavelet operation (``wgpt.wavelet``): one pass forward, one backward.

Both variants are one computation here. Every modified coordinate ``i`` has S taps, a window
``w[i, k]`` and a weight ``m[i, k]``, and its output is ``y[t] = sum_k m[i, k] * avg_w[i, k][t]``,
the causal mean over ``min(t + 1, w)`` steps. The fixed variant has one tap per coordinate (its
own window, weight 1); the learnable one the windows ``1, 2, .., 2**L`` and its mixture.

A program owns one sequence and a block of coordinates and walks time in blocks of rows, keeping
running sums in registers. With ``P[t]`` the prefix sum and ``c_k = m_k / w_k``:

- forward: ``y[t] = Z[t] + P[t] * e[t]``, where ``Z`` is the running sum of
  ``sum_k c_k * (x[t] - x[t - w_k])`` (``x`` before 0 is 0) and ``e[t] = sum over the taps whose
  window has not filled (w_k > t + 1) of m_k * (1 / (t + 1) - 1 / w_k)``: the share of ``P[t]``
  that a window counting only ``t + 1`` steps adds beyond ``c_k``. Two scans whatever S is.
- backward, walking time backwards: ``grad_x[s]`` is the reverse running sum of
  ``sum_k m_k * u_k[s]``, ``u_k[s] = g[s] / min(s + 1, w_k) - g[s + w_k] / w_k``, the transposed
  filter; and ``grad_m[i, k] = sum over batch and time of P[s] * u_k[s]``, with ``P`` recovered
  from the sequence total the forward kept and a reverse running sum of ``x``.

HBM traffic is one read of ``x`` (and of ``g``) and one write per pass, whatever S is: the
lagged rows ``x[t - w_k]`` are re-reads of rows the program read before, served from cache. The
arithmetic is O(S) per element, as any exact form of a filter with S breakpoints is. Sums run in
fp32 (fp64 for fp64 inputs), as the torch path's prefix sums do.

Kernels are compiled for CUDA; with ``TRITON_INTERPRET=1`` set before this module is imported,
Triton's interpreter runs them on CPU tensors, which is how the tests check them without a GPU.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import triton
import triton.language as tl
from torch import Tensor

# Rows of time per iteration and coordinates per program. 32 fp32 coordinates are one 128-byte
# line per row; a program's rows of 64 keep its registers small with S lagged tiles in flight.
BLOCK_T = 64
BLOCK_H = 32


@triton.jit
def _forward_kernel(
    h_ptr, out_ptr, total_ptr, mix_ptr, win_ptr, T, C, split, H,
    S: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)  # modified coordinates of this program
    on = cols < H
    h_seq, out_seq = h_ptr + b * T * C, out_ptr + b * T * C
    gain = tl.zeros([BLOCK_H], ACC)  # sum_k m_k / w_k
    for k in tl.static_range(S):
        m = tl.load(mix_ptr + cols * S + k, mask=on, other=0.0).to(ACC)
        gain += m / tl.load(win_ptr + cols * S + k, mask=on, other=1).to(ACC)
    total = tl.zeros([BLOCK_H], ACC)  # P at the last row done
    level = tl.zeros([BLOCK_H], ACC)  # Z at the last row done
    for t0 in range(0, T, BLOCK_T):
        rows = t0 + tl.arange(0, BLOCK_T)
        mask = (rows < T)[:, None] & on[None, :]
        at = rows[:, None] * C + split + cols[None, :]  # (BLOCK_T, BLOCK_H)
        x = tl.load(h_seq + at, mask=mask, other=0.0).to(ACC)
        steps = (rows + 1).to(ACC)[:, None]
        d = x * gain[None, :]
        early = tl.zeros([BLOCK_T, BLOCK_H], ACC)
        for k in tl.static_range(S):
            m = tl.load(mix_ptr + cols * S + k, mask=on, other=0.0).to(ACC)[None, :]
            wi = tl.load(win_ptr + cols * S + k, mask=on, other=1)[None, :]
            w = wi.to(ACC)
            gone = tl.load(h_seq + at - wi * C, mask=mask & (rows[:, None] >= wi), other=0.0).to(ACC)
            d -= m / w * gone
            early += tl.where(steps < w, m * (1.0 / steps - 1.0 / w), 0.0)
        p = total[None, :] + tl.cumsum(x, axis=0)
        z = level[None, :] + tl.cumsum(d, axis=0)
        total += tl.sum(x, axis=0)
        level += tl.sum(d, axis=0)
        tl.store(out_seq + at, (z + p * early).to(out_ptr.dtype.element_ty), mask=mask)
        kept = (rows < T)[:, None] & (cols < split)[None, :]  # the unmodified half, copied by the same programs
        same = rows[:, None] * C + cols[None, :]
        tl.store(out_seq + same, tl.load(h_seq + same, mask=kept), mask=kept)
    tl.store(total_ptr + b * H + cols, total, mask=on)


@triton.jit
def _backward_kernel(
    g_ptr, h_ptr, total_ptr, mix_ptr, win_ptr, gh_ptr, gmix_ptr, T, C, split, H,
    S: tl.constexpr, S_PAD: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr, ACC: tl.constexpr,
    MIX_GRAD: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    on = cols < H
    g_seq, h_seq, gh_seq = g_ptr + b * T * C, h_ptr + b * T * C, gh_ptr + b * T * C
    scales = tl.arange(0, S_PAD)
    after = tl.zeros([BLOCK_H], ACC)  # sum of q over the rows already done (later in time)
    later = tl.zeros([BLOCK_H], ACC)  # sum of x over the same rows
    total = tl.zeros([BLOCK_H], ACC)
    if MIX_GRAD:
        total = tl.load(total_ptr + b * H + cols, mask=on, other=0.0).to(ACC)
    grad_mix = tl.zeros([BLOCK_H, S_PAD], ACC)
    n_blocks = tl.cdiv(T, BLOCK_T)
    for i in range(n_blocks):
        rows = (n_blocks - 1 - i) * BLOCK_T + tl.arange(0, BLOCK_T)
        mask = (rows < T)[:, None] & on[None, :]
        at = rows[:, None] * C + split + cols[None, :]
        g = tl.load(g_seq + at, mask=mask, other=0.0).to(ACC)
        steps = (rows + 1).to(ACC)[:, None]
        p = tl.zeros([BLOCK_T, BLOCK_H], ACC)
        if MIX_GRAD:
            x = tl.load(h_seq + at, mask=mask, other=0.0).to(ACC)
            p = total[None, :] - later[None, :] - tl.cumsum(x, axis=0, reverse=True) + x  # P[s]
            later += tl.sum(x, axis=0)
        q = tl.zeros([BLOCK_T, BLOCK_H], ACC)
        for k in tl.static_range(S):
            m = tl.load(mix_ptr + cols * S + k, mask=on, other=0.0).to(ACC)[None, :]
            wi = tl.load(win_ptr + cols * S + k, mask=on, other=1)[None, :]
            w = wi.to(ACC)
            ahead = tl.load(g_seq + at + wi * C, mask=mask & (rows[:, None] + wi < T), other=0.0).to(ACC)
            u = g / tl.minimum(steps, w) - ahead / w
            q += m * u
            if MIX_GRAD:
                grad_mix += tl.where(scales[None, :] == k, tl.sum(p * u, axis=0)[:, None], 0.0)
        tl.store(gh_seq + at, (after[None, :] + tl.cumsum(q, axis=0, reverse=True)).to(gh_ptr.dtype.element_ty), mask=mask)
        after += tl.sum(q, axis=0)
        kept = (rows < T)[:, None] & (cols < split)[None, :]
        same = rows[:, None] * C + cols[None, :]
        tl.store(gh_seq + same, tl.load(g_seq + same, mask=kept), mask=kept)
    if MIX_GRAD:
        slots = (b * H + cols[:, None]) * S + scales[None, :]
        tl.store(gmix_ptr + slots, grad_mix, mask=on[:, None] & (scales < S)[None, :])


def accumulator(dtype: torch.dtype) -> torch.dtype:
    """The kernels' sums: fp64 for fp64 inputs, fp32 otherwise (as ``wgpt.wavelet._sum_dtype``)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _triton_dtype(dtype: torch.dtype) -> tl.dtype:
    return tl.float64 if dtype == torch.float64 else tl.float32


def forward(h: Tensor, mix: Tensor, windows: Tensor, split: int) -> tuple[Tensor, Tensor]:
    """``h`` (B, T, C) contiguous with its coordinates ``[split, C)`` averaged by the taps (H, S), and each sequence's total (B, H)."""
    bsz, n, width = h.shape
    n_mod, n_taps = mix.shape
    out = torch.empty_like(h)
    total = h.new_empty(bsz, n_mod, dtype=accumulator(h.dtype))
    grid = (bsz, triton.cdiv(n_mod, BLOCK_H))
    with torch.cuda.device(h.device) if h.is_cuda else nullcontext():  # CPU tensors: the interpreter
        _forward_kernel[grid](
            h, out, total, mix, windows, n, width, split, n_mod,
            S=n_taps, BLOCK_T=BLOCK_T, BLOCK_H=BLOCK_H, ACC=_triton_dtype(h.dtype),
        )  # fmt: skip
    return out, total


def backward(grad: Tensor, h: Tensor, total: Tensor, mix: Tensor, windows: Tensor, split: int, mix_grad: bool) -> tuple[Tensor, Tensor]:
    """The gradients of ``forward`` for ``h`` and, when ``mix_grad``, for ``mix`` (zeros otherwise)."""
    bsz, n, width = grad.shape
    n_mod, n_taps = mix.shape
    grad_h = torch.empty_like(grad)
    partial = grad.new_zeros(bsz if mix_grad else 1, n_mod, n_taps, dtype=accumulator(h.dtype))  # per sequence
    grid = (bsz, triton.cdiv(n_mod, BLOCK_H))
    with torch.cuda.device(grad.device) if grad.is_cuda else nullcontext():
        _backward_kernel[grid](
            grad, h, total, mix, windows, grad_h, partial, n, width, split, n_mod,
            S=n_taps, S_PAD=triton.next_power_of_2(n_taps), BLOCK_T=BLOCK_T, BLOCK_H=BLOCK_H,
            ACC=_triton_dtype(h.dtype), MIX_GRAD=mix_grad,
        )  # fmt: skip
    return grad_h, partial.sum(0).to(mix.dtype)
