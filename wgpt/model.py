"""The GPT decoder: pre-LayerNorm blocks, SDPA causal attention, and the wavelet structure.

The wavelet operation (``wgpt.wavelet``) is applied to every block's output on the residual
stream, before the next block and before the final LayerNorm, as WaveletGPT prescribes. It is
one config field: ``ModelConfig.wavelet`` in ``none | haar | learnable``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from wgpt.config import ModelConfig
from wgpt.wavelet import WaveletMix


@dataclass
class DecodeCache:
    """Per-layer keys, values and wavelet prefix sums of the positions decoded so far.

    Each layer's buffers are allocated at the first call for the whole context and filled in
    place, so a new position costs a write of its own keys, values and sums, never a copy of
    what is already held.
    """

    layers: list[dict[str, Tensor]] = field(default_factory=list)
    length: int = 0  # positions held

    def layer(self, i: int) -> dict[str, Tensor]:
        while len(self.layers) <= i:
            self.layers.append({})
        return self.layers[i]


def rotary(x: Tensor, pos0: int, base: float = 10000.0) -> Tensor:
    """Rotary position embedding of ``x`` (B, nh, n, hd) at positions ``pos0 ..``."""
    hd, n = x.shape[-1], x.shape[-2]
    inv_freq = base ** (-torch.arange(0, hd, 2, device=x.device, dtype=torch.float32) / hd)  # (hd/2,)
    angles = torch.arange(pos0, pos0 + n, device=x.device, dtype=torch.float32)[:, None] * inv_freq  # (n, hd/2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x.float()[..., 0::2], x.float()[..., 1::2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    return out.to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.context = cfg.context
        self.rope = cfg.position == "rope"
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: Tensor, cache: dict[str, Tensor] | None, pos0: int) -> Tensor:
        bsz, n, d = x.shape
        qkv = self.qkv(x).view(bsz, n, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)  # (3, B, nh, n, hd)
        q, k, v = qkv.unbind(0)
        if self.rope:
            q, k = rotary(q, pos0), rotary(k, pos0)
        if cache is not None:
            k, v = self._cached(cache, k, v, pos0)
        dropout = self.dropout if self.training else 0.0
        if pos0 == 0 or cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        elif n == 1:  # one new query sees every cached key
            y = F.scaled_dot_product_attention(q, k, v)
        else:  # a chunk after cached positions: query i sees keys up to pos0 + i
            mask = torch.ones(n, pos0 + n, dtype=torch.bool, device=x.device).tril(diagonal=pos0)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(bsz, n, d)  # (B, n, C)
        return self.proj(y)

    def decode_one(self, h: Tensor, cache: dict[str, Tensor], pos: int) -> Tensor:
        """``forward`` for one new position ``h`` (B, C) after ``pos`` cached ones, in fewer operations."""
        bsz, d = h.shape
        qkv = F.linear(h, self.qkv.weight, self.qkv.bias).view(bsz, 3, self.n_head, 1, d // self.n_head)
        q, k, v = qkv.unbind(1)  # (B, nh, 1, hd)
        if self.rope:
            q, k = rotary(q, pos), rotary(k, pos)
        y = F.scaled_dot_product_attention(q, *self._cached(cache, k, v, pos))  # (B, nh, 1, hd)
        return F.linear(y.view(bsz, d), self.proj.weight, self.proj.bias)

    def _cached(self, cache: dict[str, Tensor], k: Tensor, v: Tensor, pos0: int) -> tuple[Tensor, Tensor]:
        """Write ``k``, ``v`` (B, nh, n, hd) at ``pos0`` into the layer's buffers; return the keys and values so far.

        The (B, nh, context, hd) buffers are allocated at the first call and then filled in place.
        """
        if "k" not in cache:
            cache["k"], cache["v"] = (k.new_empty(k.shape[0], self.n_head, self.context, k.shape[-1]) for _ in range(2))
        n, end = k.shape[2], pos0 + k.shape[2]
        cache["k"].narrow(2, pos0, n).copy_(k)
        cache["v"].narrow(2, pos0, n).copy_(v)
        return cache["k"].narrow(2, 0, end), cache["v"].narrow(2, 0, end)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)
        self.wavelet = None if cfg.wavelet == "none" else WaveletMix(cfg.d_model, cfg.context, cfg.wavelet == "learnable")

    def forward(self, x: Tensor, cache: dict[str, Tensor] | None, pos0: int) -> Tensor:
        x = x + self._drop(self.attn(self.ln1(x), cache, pos0))
        x = x + self._drop(self.mlp(self.ln2(x)))
        if self.wavelet is not None:
            if cache is None:
                x = self.wavelet(x)
            else:  # in-place prefix sums: O(C) per new position
                x, cache["prefix"] = self.wavelet.step(x, cache.get("prefix"), pos0)
        return x

    def decode_one(self, x: Tensor, cache: dict[str, Tensor], pos: int) -> Tensor:
        """``forward`` for one new position ``x`` (B, C) after ``pos`` cached ones (inference only)."""
        # Functional calls on the modules' parameters: each module call costs as much as a small op here.
        x = x + self.attn.decode_one(_layer_norm(self.ln1, x), cache, pos)
        fc, _, out = self.mlp
        x = x + F.linear(F.gelu(F.linear(_layer_norm(self.ln2, x), fc.weight, fc.bias)), out.weight, out.bias)
        if self.wavelet is not None:
            cache["prefix"] = self.wavelet.decode_one(x, cache.get("prefix"), pos)  # updates x in place
        return x

    def _drop(self, y: Tensor) -> Tensor:
        """Dropout while training; otherwise skip the module call, which one-token decoding steps feel."""
        return self.drop(y) if self.training and self.drop.p else y


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
        """``idx`` (B, n) token ids; with a cache they continue the cached positions."""
        pos0 = 0 if cache is None else cache.length
        n = idx.shape[1]
        if self.pos_emb is not None and pos0 + n > self.cfg.context:
            raise ValueError(f"positions {pos0}..{pos0 + n - 1} exceed the context of {self.cfg.context}")
        if cache is not None and n == 1 and targets is None and not (self.training or torch.is_grad_enabled()):
            return self._decode_one(idx[:, 0], cache).unsqueeze(1), None
        x = self.tok_emb(idx)  # (B, n, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb.weight[pos0 : pos0 + n]
        if self.training and self.drop.p:
            x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, None if cache is None else cache.layer(i), pos0)
        if cache is not None:
            cache.length += n
        logits = self.head(self.ln_f(x))  # (B, n, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss

    def _decode_one(self, tok: Tensor, cache: DecodeCache) -> Tensor:
        """Logits (B, V) of one new token per row, ``tok`` (B,), after the cached positions.

        The same computation as ``forward``, written for the shape of decoding: a small model's
        one-token step is bound by the number of tensor operations, not by arithmetic, so this
        path skips the reshapes a window needs and updates buffers in place. Tests check that
        it gives ``forward``'s logits at every position.
        """
        pos = cache.length
        x = F.embedding(tok, self.tok_emb.weight)  # (B, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb.weight[pos]
        for i, block in enumerate(self.blocks):
            x = block.decode_one(x, cache.layer(i), pos)
        cache.length += 1
        return F.linear(_layer_norm(self.ln_f, x), self.head.weight)


def _layer_norm(ln: nn.LayerNorm, x: Tensor) -> Tensor:
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)
