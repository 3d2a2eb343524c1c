"""Cached decoding: what the model keeps between steps, and the step that adds one token.

A window pass with a ``DecodeCache`` (``GPT.forward(idx, cache=...)``) fills, for every block,
a buffer of keys and values and a buffer of the wavelet's prefix sums (docs/generation.md).
``OneTokenStep`` then runs ``GPT.forward``'s computation for one new position per row.

A small model's one-token step is bound by Python's cost per call and by the number of tensor
operations, not by arithmetic: the tiny preset's step is about 1.6 MFLOP. So the step is
prepared once: parameters are held as plain tensors (no module attribute lookups on the way),
and each position's views into the buffers are made at its first use and kept, so the slides of
a long generation, which reuse the same positions, find them ready. Tests check the step against
the whole-window pass at every position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn import functional as F

from wgpt.positions import rotary

if TYPE_CHECKING:
    from wgpt.model import GPT, Block

View = tuple[Tensor, ...]


@dataclass
class DecodeCache:
    """Per-layer keys, values and wavelet prefix sums of the positions decoded so far.

    Each layer's buffers are allocated by the first pass for the whole context and filled in
    place, so a new position costs a write of its own keys, values and sums, never a copy of
    what is already held.
    """

    layers: list[dict[str, Tensor]] = field(default_factory=list)
    length: int = 0  # positions held
    step: OneTokenStep | None = None  # made at the first one-token step, on these buffers

    def layer(self, i: int) -> dict[str, Tensor]:
        while len(self.layers) <= i:
            self.layers.append({})
        return self.layers[i]

    def reset(self) -> None:
        """Forget the positions held, keeping the buffers: the next pass (same batch size) overwrites them."""
        self.length = 0


class OneTokenStep:
    """Logits (B, V) of one new token per row, ``tok`` (B,), after the cached positions (inference only)."""

    def __init__(self, model: GPT, cache: DecodeCache) -> None:
        self.cache = cache
        self.emb, self.head = model.tok_emb.weight, model.head.weight
        self.pos_rows = None if model.pos_emb is None else model.pos_emb.weight.unbind(0)  # (C,) per position
        self.ln_f = _norm(model.ln_f)
        self.blocks = [_BlockStep(block, cache.layer(i)) for i, block in enumerate(model.blocks)]
        self.views: list[list[View] | None] = [None] * model.cfg.context  # per position, per block

    def __call__(self, tok: Tensor) -> Tensor:
        pos = self.cache.length
        if pos >= len(self.views):
            raise ValueError(f"position {pos} exceeds the context of {len(self.views)}")
        views = self.views[pos] or self._views_at(pos)
        x = F.embedding(tok, self.emb)  # (B, C)
        if self.pos_rows is not None:
            x = x + self.pos_rows[pos]
        for block, view in zip(self.blocks, views, strict=True):
            x = block(x, view, pos)
        self.cache.length = pos + 1
        return F.linear(torch.layer_norm(x, *self.ln_f), self.head)

    def _views_at(self, pos: int) -> list[View]:
        views = self.views[pos] = [block.views_at(pos) for block in self.blocks]
        return views


class _BlockStep:
    """One block's part of the step: ``Block.forward`` on a (B, C) row."""

    def __init__(self, block: Block, buffers: dict[str, Tensor]) -> None:
        attn, (fc, _, out), wavelet = block.attn, block.mlp, block.wavelet
        self.block, self.buffers = block, buffers
        self.n_head, self.rope = attn.n_head, attn.rope
        self.ln1, self.ln2 = _norm(block.ln1), _norm(block.ln2)
        self.qkv, self.proj = (attn.qkv.weight, attn.qkv.bias), (attn.proj.weight, attn.proj.bias)
        self.fc, self.out = (fc.weight, fc.bias), (out.weight, out.bias)
        # The fixed wavelet has a path of three operations; the learnable one, or prefix sums kept
        # wider than the activations (bf16), go through ``WaveletMix.step``.
        self.split = 0 if wavelet is None else wavelet.split
        self.haar = wavelet is not None and wavelet.mix is None and buffers["prefix"].dtype == attn.qkv.weight.dtype

    def views_at(self, pos: int) -> View:
        """This position's slot in the key/value buffer, the keys and values so far, and the wavelet's rows."""
        kv = self.buffers["kv"]  # (B, 2, nh, context, hd)
        views = (kv.select(3, pos), kv.select(1, 0).narrow(2, 0, pos + 1), kv.select(1, 1).narrow(2, 0, pos + 1))
        if self.haar:
            prefix, wavelet = self.buffers["prefix"], self.block.wavelet  # (B, context + 1, H)
            rows = (prefix.select(1, pos), prefix.select(1, pos + 1), prefix.view(prefix.shape[0], -1))
            views += (*rows, wavelet.lo_flat.select(0, pos), wavelet.inv_count.select(0, pos))
        return views

    def __call__(self, x: Tensor, views: View, pos: int) -> Tensor:
        bsz, d = x.shape
        nh, hd = self.n_head, d // self.n_head
        slot, keys, values = views[:3]
        qkv = F.linear(torch.layer_norm(x, *self.ln1), *self.qkv)  # (B, 3C)
        q = qkv.narrow(1, 0, d).view(bsz, nh, 1, hd)
        if self.rope:
            q = rotary(q, pos)
            slot.select(1, 0).copy_(rotary(qkv.narrow(1, d, d).view(bsz, nh, 1, hd), pos).view(bsz, nh, hd))
            slot.select(1, 1).copy_(qkv.narrow(1, 2 * d, d).view(bsz, nh, hd))
        else:
            slot.copy_(qkv.narrow(1, d, 2 * d).view(bsz, 2, nh, hd))
        y = F.scaled_dot_product_attention(q, keys, values)  # (B, nh, 1, hd): one query sees every cached key
        x = x + F.linear(y.view(bsz, d), *self.proj)
        x = x + F.linear(F.gelu(F.linear(torch.layer_norm(x, *self.ln2), *self.fc)), *self.out)
        if self.haar:
            self._haar(x, views[3:])
        elif self.block.wavelet is not None:
            out, _ = self.block.wavelet.step(x.unsqueeze(1), self.buffers["prefix"], pos)  # fills the buffer in place
            x = out[:, 0]
        return x

    def _haar(self, x: Tensor, views: View) -> None:
        """The fixed wavelet, in place on ``x``: new prefix sums, then (sum - sum at window start) / count."""
        before, now, flat, lo_index, inv_count = views
        mod = x.narrow(1, self.split, now.shape[1])  # (B, H)
        torch.add(before, mod, out=now)
        torch.mul(now - flat.index_select(1, lo_index), inv_count, out=mod)


def _norm(ln: torch.nn.LayerNorm) -> tuple:
    """``torch.layer_norm``'s arguments after the input (it skips ``F.layer_norm``'s Python checks)."""
    return ln.normalized_shape, ln.weight, ln.bias, ln.eps
