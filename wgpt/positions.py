"""Rotary position embeddings (Su et al., "RoFormer", 2021), used when ``ModelConfig.position`` is ``rope``."""

from __future__ import annotations

import torch
from torch import Tensor


def rotary(x: Tensor, pos0: int | Tensor, base: float = 10000.0) -> Tensor:
    """Rotary position embedding of ``x`` (B, nh, n, hd) at positions ``pos0 ..`` (an int, or a (1,) device tensor)."""
    hd, n = x.shape[-1], x.shape[-2]
    inv_freq = base ** (-torch.arange(0, hd, 2, device=x.device, dtype=torch.float32) / hd)  # (hd/2,)
    positions = torch.arange(n, device=x.device) + pos0
    angles = positions.to(torch.float32)[:, None] * inv_freq  # (n, hd/2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x.float()[..., 0::2], x.float()[..., 1::2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    return out.to(x.dtype)
