"""The GPT decoder: pre-LayerNorm blocks, SDPA causal attention, and the wavelet structure.

The wavelet operation (``wgpt.wavelet``) is applied to every block's output on the residual
stream, before the next block and before the final LayerNorm, as WaveletGPT prescribes. It is
one config field: ``ModelConfig.wavelet`` in ``none | haar | learnable``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from wgpt.config import ModelConfig
from wgpt.decoding import DecodeCache, OneTokenStep
from wgpt.positions import rotary
from wgpt.wavelet import WaveletMix


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

    def _cached(self, cache: dict[str, Tensor], k: Tensor, v: Tensor, pos0: int) -> tuple[Tensor, Tensor]:
        """Write ``k``, ``v`` (B, nh, n, hd) at ``pos0`` into the layer's buffer; return the keys and values so far.

        One (B, 2, nh, context, hd) buffer holds keys and values, so that a one-token step writes
        both in one copy (``wgpt.decoding``). It is allocated at the first call, then filled in place.
        """
        if "kv" not in cache:
            cache["kv"] = k.new_empty(k.shape[0], 2, self.n_head, self.context, k.shape[-1])
        n, end = k.shape[2], pos0 + k.shape[2]
        keys, values = cache["kv"].select(1, 0), cache["kv"].select(1, 1)  # not unbind: its views refuse in-place writes under autograd
        keys.narrow(2, pos0, n).copy_(k)
        values.narrow(2, pos0, n).copy_(v)
        return keys.narrow(2, 0, end), values.narrow(2, 0, end)


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
        if cache is not None and cache.length and n == 1 and targets is None and not (self.training or torch.is_grad_enabled()):
            return self.decode_step(idx[:, 0], cache).unsqueeze(1), None
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

    def decode_step(self, tok: Tensor, cache: DecodeCache) -> Tensor:
        """Logits (B, V) of one new token per row, ``tok`` (B,), after the positions ``cache`` holds.

        Inference only, and the cache must hold at least one position (a window pass fills it).
        The same computation as ``forward``, prepared once per cache (``wgpt.decoding``): a small
        model's one-token step is bound by the number of operations, not by arithmetic.
        """
        if cache.length == 0:
            raise ValueError("the cache is empty: pass the prompt through forward(idx, cache=cache) first")
        if cache.step is None:
            cache.step = OneTokenStep(self, cache)
        return cache.step(tok)
