"""Training and evaluation windows over a split: a pure function of (seed, step).

Equal seeds give equal batches whatever the model or the number of processes, which is what
makes baseline/wavelet comparisons and exact resumes possible. A split is anything with ``len``
and contiguous slices: a memory-mapped array, or a ``wgpt.shards.TokenStream`` over many files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from wgpt.errors import WgptError


def check_length(data: Any, context: int, split: str, where: Path) -> None:
    if len(data) < context + 1:
        raise WgptError(
            f"the {split} split of {where} has {len(data)} tokens, fewer than context + 1 = {context + 1}: add data or lower --context"
        )


def train_offsets(n_tokens: int, context: int, batch: int, seed: int, step: int) -> torch.Tensor:
    """Start offsets of the global batch for ``step``: a pure function of (seed, step)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, n_tokens - context, (batch,), generator=g)


def mixture_offsets(sizes: list[int], weights: list[float], context: int, batch: int, seed: int, step: int) -> torch.Tensor:
    """Start offsets into sources laid end to end (``sizes`` tokens each): every window picks a
    source with probability proportional to its weight, then a start inside it, never across two."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    source = torch.multinomial(torch.tensor(weights, dtype=torch.float64), batch, replacement=True, generator=g)
    room = torch.tensor([max(0, n - context) for n in sizes], dtype=torch.float64)[source]  # starts that fit
    within = (torch.rand(batch, generator=g, dtype=torch.float64) * room).long()
    starts = torch.tensor([0, *sizes[:-1]]).cumsum(0)
    return starts[source] + within


def batch_offsets(data: Any, context: int, batch: int, seed: int, step: int) -> torch.Tensor:
    """The training windows of ``step`` over a ``wgpt.shards.TrainingData``: uniform over all of
    its training tokens, or by ``data.weights`` when they are given."""
    if data.weights is None:
        return train_offsets(len(data.train), context, batch, seed, step)
    return mixture_offsets(data.train_sizes, data.weights, context, batch, seed, step)


def eval_offsets(n_tokens: int, context: int, count: int) -> torch.Tensor:
    """``count`` evenly spaced windows over the split: the same every evaluation."""
    return torch.linspace(0, n_tokens - context - 1, count).long()


def get_batch(data: Any, offsets: torch.Tensor, context: int, vocab_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets, both (B, context) int64; with ``vocab_size``, ids at or
    above it (shards whose meta.json states too small a vocabulary) are one line, not a crash."""
    rows = np.stack([np.asarray(data[o : o + context + 1], dtype=np.int64) for o in offsets.tolist()])  # (B, T+1)
    if vocab_size is not None and rows.size and rows.max() >= vocab_size:
        raise WgptError(
            f"the shards hold token id {rows.max()}, outside the vocabulary of {vocab_size} their meta.json states: run `wgpt prepare` again"
        )
    xy = torch.from_numpy(rows)
    return xy[:, :-1], xy[:, 1:]
