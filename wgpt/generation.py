"""Sampling: small pure filters, and a decoding loop with a KV + wavelet cache.

Generation past the context slides the window by half a context at a time and re-encodes the
kept half. Training always saw windows that start at position 0, with the wavelet's averages
clamped at the window start; re-encoding keeps generation on that distribution, and sliding by
half a window pays one half-window prefill per half-window of new tokens. The uncached path
(``use_cache=False``) uses the same windows, so both give the same tokens. docs/generation.md
explains the choice and measures its cost.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from wgpt.cache import DecodeCache
from wgpt.errors import WgptError
from wgpt.graphs import FixedStep
from wgpt.model import GPT

if TYPE_CHECKING:
    from wgpt.modalities import Modality


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


TEMPERATURES = (1e-4, 1e4)  # below, logits / temperature overflows to inf; above, every token is equally likely


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    low, high = TEMPERATURES
    if not low <= temperature <= high:
        raise WgptError(f"--temperature must be between {low:g} and {high:g}, got {temperature} (use --top-k 1 for greedy decoding)")
    if top_k is not None and top_k < 1:
        raise WgptError(f"--top-k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise WgptError(f"--top-p must be in (0, 1], got {top_p}")


def check_prompt(prompt: list[int], context: int) -> None:
    if not prompt:
        raise WgptError("the prompt is empty: give at least one token")
    if len(prompt) > context:
        raise WgptError(
            f"the prompt is {len(prompt)} tokens, longer than the model's context of {context}: shorten it or pass --trim-prompt"
        )


def next_token(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None, gen: torch.Generator) -> Tensor:
    """(B, V) logits of the last position -> (B, 1) sampled ids."""
    if top_k == 1:  # greedy: no randomness (and no use for the temperature), so cached and uncached runs agree exactly
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None and top_p < 1:
        logits = top_p_filter(logits, top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=gen).to(logits.device)


def window_start(length: int, start: int, context: int) -> int:
    """First position of the window that predicts token ``length``: slide by half a context."""
    return length - context // 2 if length - start > context else start


# torch's at::internal::GRAIN_SIZE: elementwise work smaller than this stays on one thread anyway.
PARALLEL_GRAIN = 32768


def step_threads(rows: int, d_ff: int, default: int) -> int:
    """Intra-op threads for a CPU forward over ``rows`` positions (batch x new tokens).

    A one-token step of a small model has too little work to share, yet attention and GELU
    still wake the worker threads, and on a shared machine the spinning workers take the core
    from the main thread: one-token steps of the tiny model ran 10-20x slower on two threads
    than on one (docs/generation.md). Steps whose widest activation is below torch's own
    parallel grain run on one thread; prefills and whole windows keep ``default``.
    """
    return 1 if rows * d_ff < PARALLEL_GRAIN else default


@contextmanager
def _decoding_settings() -> Iterator[int]:
    """Yield the caller's intra-op thread count; set it, oneDNN's switch and the garbage collector back on the way out.

    Inside, oneDNN is off: on a CPU it serves GELU here, at 6.7 us a call on a 512-wide row
    against 1.4 us for torch's own kernel (measured alone), and a small model's one-token step
    makes four such calls. Python's cyclic garbage collector is paused too: each step makes
    and drops tens of tensor objects and the cache keeps views, so collections come often and
    a full one walks every object torch has loaded, tens of milliseconds in the middle of a
    step. The loop makes no reference cycles. Both paths, cached and uncached, run under the
    same settings.
    """
    threads, onednn, collecting = torch.get_num_threads(), torch.backends.mkldnn.enabled, gc.isenabled()
    torch.backends.mkldnn.enabled = False
    gc.disable()
    try:
        yield threads
    finally:
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = onednn
        if collecting:
            gc.enable()


def _use_threads(model: GPT, device: torch.device, rows: int, default_threads: int) -> None:
    """On a CPU, set the intra-op threads for a pass over ``rows`` positions (``step_threads``)."""
    if device.type == "cpu":
        threads = step_threads(rows, model.cfg.d_ff, default_threads)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)


def _forward(model: GPT, idx: Tensor, cache: DecodeCache | None, default_threads: int) -> Tensor:
    """Logits (B, V) of the last position of ``idx`` (B, n), continuing ``cache`` if given."""
    _use_threads(model, idx.device, idx.numel(), default_threads)
    logits, _ = model(idx, cache=cache)
    return logits.select(1, -1)


class _Constraint:
    """Masks the ids a modality's rule forbids after each row's tokens so far (e.g. broken UTF-8).

    A rule has few distinct masks (a state machine's states), so each becomes a tensor on the
    model's device once and is reused: the per-token cost is one ``masked_fill``.
    """

    def __init__(self, allowed: Callable[[list[int], int], np.ndarray], device: torch.device) -> None:
        self.allowed, self.device = allowed, device
        self.blocked: dict[bytes, Tensor] = {}

    def __call__(self, logits: Tensor, seq: Tensor, length: int, remaining: int) -> Tensor:
        """``logits`` (B, V) for the token after the first ``length`` of ``seq`` (B, L)."""
        tails = seq.narrow(1, max(0, length - 4), min(4, length)).tolist()
        blocked = [self._blocked(self.allowed(tail, remaining)) for tail in tails]
        return logits.masked_fill(blocked[0] if len(blocked) == 1 else torch.stack(blocked), float("-inf"))

    def _blocked(self, mask: np.ndarray) -> Tensor:
        key = mask.tobytes()
        if key not in self.blocked:
            self.blocked[key] = (~torch.from_numpy(mask.copy())).to(self.device)
        return self.blocked[key]


@torch.inference_mode()
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
    allowed: Callable[[list[int], int], np.ndarray] | None = None,
    stop: Callable[[Tensor], bool] | None = None,
    modality: Modality | None = None,
    cuda_graph: bool = False,
) -> list[list[int]]:
    """Continue ``prompt`` by ``n_tokens`` for ``num_samples`` samples in one batch.

    Returns only the new tokens of each sample. ``on_step`` sees each (B,) column of new ids;
    ``stop`` sees the (B, n) new ids so far after each token, and ends generation early by
    returning True (a sample asked for in seconds or bars). ``modality`` applies its
    ``next_token_rule`` (e.g. bytes that stay valid UTF-8) where ``allowed`` is not given, so
    ``modality.decode`` of the result is what ``wgpt sample`` writes for the same seed.
    On CPU, one-token steps run on one intra-op thread (``step_threads``); the caller's thread
    count is restored on return. ``cuda_graph`` runs the one-token steps at fixed shapes
    (``wgpt.graphs.FixedStep``), replayed from one CUDA graph on a GPU and eagerly elsewhere;
    the tokens are those of the other paths.
    """
    check_sampling(temperature, top_k, top_p)
    check_prompt(prompt, model.cfg.context)
    context = model.cfg.context
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    # Preallocated: growing by torch.cat would copy the sequence at every step, O(n^2) for long audio.
    seq = torch.empty(num_samples, len(prompt) + n_tokens, dtype=torch.long, device=device)  # (B, L + n)
    seq[:, : len(prompt)] = torch.tensor(prompt, device=device)
    length, start, cache = len(prompt), 0, DecodeCache()
    if allowed is None and modality is not None:
        allowed = modality.next_token_rule()
    constraint = None if allowed is None else _Constraint(allowed, device)
    fixed = FixedStep(model, cache, num_samples, device) if cuda_graph and use_cache else None
    with _decoding_settings() as default_threads:
        for _ in range(n_tokens):
            new_start = window_start(length, start, context)
            if not use_cache:
                logits = _forward(model, seq[:, new_start:length], None, default_threads)
            elif cache.length == 0 or new_start != start:  # (re-)encode the window
                cache.reset()
                logits = _forward(model, seq[:, new_start:length], cache, default_threads)
            elif fixed is not None:
                _use_threads(model, device, num_samples, default_threads)
                logits = fixed(seq.narrow(1, length - 1, 1))
            else:  # the last token of each row, after the cached positions
                logits = _forward(model, seq.narrow(1, length - 1, 1), cache, default_threads)
            start = new_start
            if constraint is not None:
                logits = constraint(logits, seq, length, n_tokens - (length - len(prompt)))
            tok = next_token(logits, temperature, top_k, top_p, gen)[:, 0]  # (B,)
            seq.select(1, length).copy_(tok)
            length += 1
            if on_step is not None:
                on_step(tok)
            if stop is not None and stop(seq[:, len(prompt) : length]):
                break
    return seq[:, len(prompt) : length].tolist()
