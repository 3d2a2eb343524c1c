"""Sampling: small pure filters, and a decoding loop with a KV + wavelet cache.

Generation past the context slides the window by half a context at a time and re-encodes the
kept half. Training always saw windows that start at position 0, with the wavelet's averages
clamped at the window start; re-encoding keeps generation on that distribution, and sliding by
half a window pays one half-window prefill per half-window of new tokens. The uncached path
(``use_cache=False``) uses the same windows, so both give the same tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from wgpt.errors import WgptError
from wgpt.model import GPT, DecodeCache


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest logits per row; the rest become -inf."""
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Keep the smallest set of tokens whose probability reaches ``p`` (nucleus sampling)."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    drop = probs.cumsum(dim=-1) - probs >= p  # tokens entirely beyond the nucleus
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not temperature > 0:
        raise WgptError(f"--temperature must be > 0, got {temperature} (use --top-k 1 for greedy decoding)")
    if top_k is not None and top_k < 1:
        raise WgptError(f"--top-k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise WgptError(f"--top-p must be in (0, 1], got {top_p}")


def next_token(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None, gen: torch.Generator) -> Tensor:
    """(B, V) logits of the last position -> (B, 1) sampled ids."""
    logits = logits.float() / temperature
    if top_k is not None:
        if top_k == 1:  # greedy: no randomness, so cached and uncached runs agree exactly
            return logits.argmax(dim=-1, keepdim=True)
        logits = top_k_filter(logits, top_k)
    if top_p is not None and top_p < 1:
        logits = top_p_filter(logits, top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=gen).to(logits.device)


def window_start(length: int, start: int, context: int) -> int:
    """First position of the window that predicts token ``length``: slide by half a context."""
    return length - context // 2 if length - start > context else start


@torch.no_grad()
def generate(
    model: GPT,
    prompt: list[int],
    n_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    num_samples: int = 1,
    seed: int = 0,
    use_cache: bool = True,
    on_step: Callable[[Tensor], None] | None = None,
) -> list[list[int]]:
    """Continue ``prompt`` by ``n_tokens`` for ``num_samples`` samples in one batch.

    Returns only the new tokens of each sample. ``on_step`` sees each (B,) column of new ids.
    """
    check_sampling(temperature, top_k, top_p)
    context = model.cfg.context
    if not prompt:
        raise WgptError("the prompt is empty: give at least one token")
    if len(prompt) > context:
        raise WgptError(
            f"the prompt is {len(prompt)} tokens, longer than the model's context of {context}: shorten it or pass --trim-prompt"
        )
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    seq = torch.tensor(prompt, device=device).repeat(num_samples, 1)  # (B, L)
    start, cache = 0, None
    for _ in range(n_tokens):
        new_start = window_start(seq.shape[1], start, context)
        if not use_cache:
            logits, _ = model(seq[:, new_start:])
        elif cache is None or new_start != start:  # (re-)encode the window
            cache = DecodeCache()
            logits, _ = model(seq[:, new_start:], cache=cache)
        else:
            logits, _ = model(seq[:, -1:], cache=cache)
        start = new_start
        tok = next_token(logits[:, -1], temperature, top_k, top_p, gen)  # (B, 1)
        seq = torch.cat([seq, tok], dim=1)
        if on_step is not None:
            on_step(tok[:, 0])
    return seq[:, len(prompt) :].tolist()
