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
    """Per-layer keys, values and wavelet prefix sums of the positions decoded so far."""

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
        self.rope = cfg.position == "rope"
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: Tensor, cache: dict[str, Tensor] | None, pos0: int) -> Tensor:
        bsz, n, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (t.view(bsz, n, self.n_head, d // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, n, hd)
        if self.rope:
            q, k = rotary(q, pos0), rotary(k, pos0)
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        n_past = k.shape[2] - n
        dropout = self.dropout if self.training else 0.0
        if n_past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        elif n == 1:  # one new query sees every cached key
            y = F.scaled_dot_product_attention(q, k, v)
        else:  # a chunk after cached positions: query i sees keys up to n_past + i
            mask = torch.ones(n, n_past + n, dtype=torch.bool, device=x.device).tril(diagonal=n_past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(bsz, n, d)  # (B, n, C)
        return self.proj(y)


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
        x = x + self.drop(self.attn(self.ln1(x), cache, pos0))
        x = x + self.drop(self.mlp(self.ln2(x)))
        if self.wavelet is not None:
            if cache is None:
                x = self.wavelet(x)
            else:  # in-place prefix sums: O(C) per new position
                x, cache["prefix"] = self.wavelet.step(x, cache.get("prefix"), pos0)
        return x


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
        x = self.tok_emb(idx)  # (B, n, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(pos0, pos0 + n, device=idx.device))
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
