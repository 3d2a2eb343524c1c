"""The Triton kernels of ``wgpt.wavelet_triton`` as PyTorch custom operators.

``torch.library.custom_op`` makes each kernel launch one operator with a schema, a fake
(shape-only) implementation and a registered backward, so ``torch.compile`` keeps it as one
node of its graph, without a graph break, and autograd calls the backward kernel. This module
needs only torch: Triton is imported at the first launch, so ``import wgpt`` stays free of it
and ``TRITON_INTERPRET=1`` may still be set after ``wgpt.wavelet`` is imported (``triton.jit``
reads it when the kernel module is imported).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _kernels() -> Any:
    from wgpt import wavelet_triton

    return wavelet_triton


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.custom_op("wgpt::wavelet_taps", mutates_args=())
def _taps(h: Tensor, mix: Tensor, windows: Tensor, split: int) -> tuple[Tensor, Tensor]:
    """The operation on contiguous ``h`` (B, T, C) and each sequence's total of the modified half (B, H)."""
    return _kernels().forward(h, mix, windows, split)


@_taps.register_fake
def _(h: Tensor, mix: Tensor, windows: Tensor, split: int) -> tuple[Tensor, Tensor]:
    return torch.empty_like(h), h.new_empty(h.shape[0], h.shape[2] - split, dtype=_accumulator(h.dtype))


@torch.library.custom_op("wgpt::wavelet_taps_backward", mutates_args=())
def _taps_backward(
    grad: Tensor, h: Tensor | None, total: Tensor, mix: Tensor, windows: Tensor, split: int, mix_grad: bool
) -> tuple[Tensor, Tensor]:
    """The gradients for ``h`` and ``mix``; ``h`` is read only for the mixture's gradient (``mix_grad``)."""
    return _kernels().backward(grad, grad if h is None else h, total, mix, windows, split, mix_grad)


@_taps_backward.register_fake
def _(grad: Tensor, h: Tensor | None, total: Tensor, mix: Tensor, windows: Tensor, split: int, mix_grad: bool) -> tuple[Tensor, Tensor]:
    return torch.empty_like(grad), torch.empty_like(mix)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    h, mix, windows, split = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(h if mix.requires_grad else None, output[1], mix, windows)  # the fixed variant keeps no activations
    ctx.split = split


def _backward(ctx: Any, grad: Tensor, _grad_total: Tensor | None) -> tuple[Tensor | None, ...]:
    h, total, mix, windows = ctx.saved_tensors
    mix_grad = ctx.needs_input_grad[1] and h is not None
    grad_h, grad_mix = _taps_backward(grad.contiguous(), h, total, mix, windows, ctx.split, mix_grad)
    return grad_h, grad_mix if mix_grad else None, None, None


_taps.register_autograd(_backward, setup_context=_setup_context)


def wavelet_taps(h: Tensor, mix: Tensor, windows: Tensor, split: int) -> Tensor:
    """``h`` (B, T, C) with each coordinate ``split + i`` replaced by ``sum_k mix[i, k] * (causal mean over windows[i, k] steps)``.

    ``mix`` (H, S) is float, ``windows`` (H, S) int32; the fixed variant is S = 1 with weight 1.
    """
    return _taps(h.contiguous(), mix.contiguous(), windows, split)[0]
