"""The GPT decoder: pre-LayerNorm blocks, SDPA causal attention, and the wavelet structure.

The wavelet operation (``wgpt.wavelet``) is applied to every block's output on the residual
stream, before the next block and before the final LayerNorm, as WaveletGPT prescribes. It is
one config field: ``ModelConfig.wavelet`` in ``none | haar | learnable``.

One forward serves training, whole-window evaluation and cached decoding: given a
``wgpt.cache.DecodeCache``, attention writes its keys and values into the cache and the wavelet
layer its prefix sums, and the new positions continue those the cache holds.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from wgpt.cache import DecodeCache, LayerCache, kept_weights, reusable
from wgpt.config import ModelConfig
from wgpt.positions import rotary
from wgpt.wavelet import WaveletMix


class BlockWeights(NamedTuple):
    """A block's parameters as plain tensors, and its layers (``Block.weights``): read with no module lookups."""

    ln1: tuple
    qkv: tuple[Tensor, Tensor]
    proj: tuple[Tensor, Tensor]
    ln2: tuple
    fc: tuple[Tensor, Tensor]
    out: tuple[Tensor, Tensor]
    attn: CausalSelfAttention
    wavelet: WaveletMix | None


class ModelWeights(NamedTuple):
    """``GPT``'s own parameters as plain tensors, and its blocks (``GPT.weights``)."""

    emb: Tensor  # (V, C)
    pos: Tensor | None  # (context, C) learned positions; None with rope
    ln_f: tuple
    head: Tensor  # (V, C), tied to ``emb``
    blocks: list[Block]


def _norm(ln: nn.LayerNorm) -> tuple:
    """``torch.layer_norm``'s arguments after the input (it skips ``F.layer_norm``'s Python checks)."""
    return ln.normalized_shape, ln.weight, ln.bias, ln.eps


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.context = cfg.context
        self.rope = cfg.position == "rope"
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: Tensor, w: BlockWeights, cache: LayerCache | None = None, pos0: int | Tensor = 0) -> Tensor:
        """``x`` (B, n, C) at positions ``pos0 ..``, or (B, C): one position per row; with a cache, after the positions it holds.

        ``pos0`` as a (1,) tensor is a fixed-shape step (``DecodeCache.position``): the new keys
        and values go in with ``index_copy_`` and the query reads the whole buffer under a mask.
        """
        bsz, d = x.shape[0], x.shape[-1]
        n = 1 if x.dim() == 2 else x.shape[1]
        nh, hd = self.n_head, d // self.n_head
        qkv = F.linear(x, *w.qkv)  # (B, n, 3C) or (B, 3C): queries, keys, values
        if n == 1:  # one position: the split into heads is a plain view
            q, kv = qkv.narrow(-1, 0, d).view(bsz, nh, 1, hd), qkv.narrow(-1, d, 2 * d).view(bsz, 2, nh, 1, hd)
        else:
            heads = qkv.view(bsz, n, 3 * nh, hd).transpose(1, 2)  # (B, 3nh, n, hd)
            q, kv = heads.narrow(1, 0, nh), heads.narrow(1, nh, 2 * nh).view(bsz, 2, nh, n, hd)
        if self.rope:
            q = rotary(q, pos0)
            kv.select(1, 0).copy_(rotary(kv.select(1, 0), pos0))
        if cache is None:
            k, v = kv.unbind(1)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        elif isinstance(pos0, Tensor):  # a fixed-shape step: same shapes and addresses at every position
            cache.kv.index_copy_(3, pos0, kv)
            visible = (torch.arange(self.context, device=x.device) <= pos0).unsqueeze(0)  # (1, context): keys up to the new one
            y = F.scaled_dot_product_attention(q, cache.kv.select(1, 0), cache.kv.select(1, 1), attn_mask=visible)
        elif n == 1 and pos0:  # one new query sees every cached key
            slot, k, v = cache.kv_rows[pos0] or self._rows(cache, pos0, 1)
            slot.copy_(kv)
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            slot, k, v = self._rows(cache, pos0, n, kv)
            slot.copy_(kv)
            if pos0 == 0:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:  # a chunk after cached positions: query i sees keys up to pos0 + i
                mask = torch.ones(n, pos0 + n, dtype=torch.bool, device=x.device).tril(diagonal=pos0)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.view(x.shape) if n == 1 else y.transpose(1, 2).reshape(bsz, n, d)
        return F.linear(y, *w.proj)  # the shape of x

    def _rows(self, cache: LayerCache, pos0: int, n: int, kv: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The slot of positions ``pos0 .. pos0+n-1`` in the cache's key/value buffer, and the keys and values up to them.

        One (B, 2, nh, context, hd) buffer holds keys and values, so that a step writes both in
        one copy. The pass at position 0 allocates it (again, if the batch, dtype or device
        changed); a one-token step's views are kept for the next pass through its position.
        """
        buf = cache.kv
        if pos0 == 0 and not reusable(buf, kv.shape[0], kv.dtype, kv.device):
            # Zeros, not empty: a fixed-shape step reads the whole buffer, and a masked key whose
            # memory held NaN would still turn its weight-zero share of the output into NaN.
            buf = cache.kv = kv.new_zeros(kv.shape[0], 2, self.n_head, self.context, kv.shape[-1])
            cache.kv_rows = [None] * self.context
        end = pos0 + n
        rows = (buf.narrow(3, pos0, n), buf.select(1, 0).narrow(2, 0, end), buf.select(1, 1).narrow(2, 0, end))
        if n == 1:
            cache.kv_rows[pos0] = rows
        return rows


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)
        self.wavelet = None if cfg.wavelet == "none" else WaveletMix(cfg.d_model, cfg.context, cfg.wavelet == "learnable")

    def forward(self, x: Tensor, cache: LayerCache | None = None, pos0: int | Tensor = 0) -> Tensor:
        """``x`` (B, n, C) at positions ``pos0 ..``, or (B, C): one position per row; with a cache, after the positions it holds.

        The one computation for training, whole windows and cached steps. The layers'
        ``forward`` is called directly and the parameters come as plain tensors (``weights``,
        which a cache keeps from its pass at position 0): module dispatch and attribute lookups
        took 18% of a profiled tiny-preset's one-token step, which is bound by Python's cost per
        operation, not by arithmetic. Hooks therefore attach to ``GPT``, not to its layers.
        """
        w = kept_weights(cache, pos0, self.weights)
        a = w.attn.forward(torch.layer_norm(x, *w.ln1), w, cache, pos0)
        x = x + (self.drop(a) if self.training and self.drop.p else a)
        m = F.linear(F.gelu(F.linear(torch.layer_norm(x, *w.ln2), *w.fc)), *w.out)
        x = x + (self.drop(m) if self.training and self.drop.p else m)
        return x if w.wavelet is None else w.wavelet.forward(x, cache, pos0)

    def weights(self) -> BlockWeights:
        """The block's parameters as plain tensors, and its attention and wavelet layers."""
        attn, (fc, _, out) = self.attn, self.mlp
        return BlockWeights(
            _norm(self.ln1), (attn.qkv.weight, attn.qkv.bias), (attn.proj.weight, attn.proj.bias),
            _norm(self.ln2), (fc.weight, fc.bias), (out.weight, out.bias), attn, self.wavelet,
        )  # fmt: skip


class GPT(nn.Module):
    """Decoder-only transformer; ``forward`` returns ``(logits, loss)``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.context, cfg.d_model) if cfg.position == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied: fewer parameters, better small models
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("attn.proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: Tensor, targets: Tensor | None = None, cache: DecodeCache | None = None) -> tuple[Tensor, Tensor | None]:
        """``idx`` (B, n) token ids; with a cache they continue the positions it holds.

        Cached decoding is inference only (under ``torch.no_grad`` or ``torch.inference_mode``):
        the layers write into the cache's buffers in place. A cache with a ``position`` tensor
        takes its one-token steps after position 0 at that device-held position (fixed shapes).
        """
        pos0, n = (0 if cache is None else cache.length), idx.shape[1]
        if pos0 + n > self.cfg.context:
            raise ValueError(f"positions {pos0}..{pos0 + n - 1} exceed the context of {self.cfg.context}")
        if cache is not None and torch.is_grad_enabled():
            raise ValueError("decoding with a cache needs autograd off: run it under torch.no_grad() or torch.inference_mode()")
        w = kept_weights(cache, pos0, self.weights)
        if cache is not None and not pos0:
            cache.for_layers(len(w.blocks))
        # A decoding step's one position per row travels as (B, C): a linear layer on a 2-D input
        # skips the reshapes around its matrix product, 7 us of a tiny model's 180 us step.
        step = cache is not None and n == 1
        at = cache.position if step and pos0 and cache.position is not None else pos0  # int, or a (1,) tensor
        x = F.embedding(idx.view(-1) if step else idx, w.emb)  # (B, n, C), or (B, C) for a step
        if w.pos is not None:
            if isinstance(at, Tensor):  # a fixed-shape step: (1, C), broadcast over the rows
                x = x + w.pos.index_select(0, at)
            else:
                x = x + (w.pos.select(0, pos0) if step else w.pos.narrow(0, pos0, n))
        if self.training and self.drop.p:
            x = self.drop(x)
        if cache is None:
            for block in w.blocks:
                x = block.forward(x)
        else:
            for block, layer in zip(w.blocks, cache.layers, strict=True):
                x = block.forward(x, layer, at)
            cache.length += n
        logits = F.linear(torch.layer_norm(x, *w.ln_f), w.head)  # (B, n, V), or (B, V) for a step
        if step:
            logits = logits.unsqueeze(1)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss

    def weights(self) -> ModelWeights:
        """The parameters ``forward`` reads, as plain tensors: a cache keeps them from its pass at position 0."""
        pos = None if self.pos_emb is None else self.pos_emb.weight
        return ModelWeights(self.tok_emb.weight, pos, _norm(self.ln_f), self.head.weight, list(self.blocks))
