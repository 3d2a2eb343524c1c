"""What cached decoding keeps between calls of ``GPT.forward(idx, cache=...)``.

For every block: a buffer of keys and values, and a buffer of the wavelet's prefix sums. Both
are allocated for the whole context by the pass that starts at position 0 and then filled in
place, so a new position costs a write of its own keys, values and sums, never a copy of what
is already held. The layers write their own parts (``CausalSelfAttention``, ``WaveletMix``);
this module only holds them.

A small model's one-token step is bound by the number of tensor operations, not by
arithmetic (the tiny preset's step is about 1.6 MFLOP), so each layer also keeps the views it
makes into its buffers at a position (the slot to write, the keys so far, the prefix rows) and
finds them ready the next time: the slides of a long generation reuse the same positions.

A cache with a ``position`` tensor runs its one-token steps at fixed shapes and addresses
instead: the step's position is read from that (1,) device tensor, keys and values are written
with ``index_copy_`` and attention reads the whole buffer under a mask. Nothing in such a step
depends on a Python number, so one capture of it replays at every position (``wgpt.graphs``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class LayerCache:
    """One block's buffers, and the views a one-token step made into them, by position."""

    kv: Tensor | None = None  # (B, 2, nh, context, hd): keys, then values
    prefix: Tensor | None = None  # (B, context + 1, H): the wavelet's prefix sums; row 0 is zero
    prefix_flat: Tensor | None = None  # the same buffer as (B, (context + 1) * H)
    weights: Any = None  # the block's parameters as plain tensors, taken at the pass from position 0
    kv_rows: list[tuple[Tensor, ...] | None] = field(default_factory=list)  # per position: slot, keys, values
    prefix_rows: list[tuple[Tensor, ...] | None] = field(default_factory=list)  # per position: the wavelet's rows


def kept_weights(cache: LayerCache | DecodeCache | None, pos0: int | Tensor, take: Callable[[], Any]) -> Any:
    """The parameters a pass reads (``take()``): a cache keeps them from its pass at position 0 for the steps after it."""
    if cache is not None and (isinstance(pos0, Tensor) or pos0):
        return cache.weights
    weights = take()
    if cache is not None:
        cache.weights = weights
    return weights


def reusable(buf: Tensor | None, batch: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether a pass from position 0 can write into ``buf`` (same batch, dtype and device) rather than allocate anew."""
    return buf is not None and buf.shape[0] == batch and buf.dtype == dtype and buf.device == device


@dataclass
class DecodeCache:
    """Per-block keys, values and wavelet prefix sums of the positions decoded so far."""

    layers: list[LayerCache] = field(default_factory=list)
    length: int = 0  # positions held
    weights: Any = None  # the model's own parameters as plain tensors, taken at the pass from position 0
    # Set: one-token steps after position 0 take their position from this (1,) long tensor on the
    # model's device, which the caller fills with ``length`` before each step (fixed-shape steps).
    position: Tensor | None = None

    def for_layers(self, n_layer: int) -> list[LayerCache]:
        if len(self.layers) != n_layer:
            self.layers = [LayerCache() for _ in range(n_layer)]
        return self.layers

    def reset(self) -> None:
        """Forget the positions held, keeping the buffers: the next pass overwrites them."""
        self.length = 0
