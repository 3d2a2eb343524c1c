"""One-token decoding steps replayed from a CUDA graph.

A small model's one-token step is a few hundred tiny kernels, and on a GPU their launches, not
their arithmetic, set the speed. ``FixedStep`` runs the step at fixed shapes and addresses
(``DecodeCache.position``: the position is a device tensor, keys and values are written by
index, attention reads the whole buffer under a mask), so on CUDA one capture replays at every
position: no capture per position, and none again when the window slides, because the pass
from position 0 writes into the buffers the capture saw (same batch, dtype and device).

Sampling stays outside the graph, on the caller's CPU generator: the capture records no random
operation and leaves every generator as it found it. On a CPU the same fixed-shape step runs
eagerly; that is what the tests compare with the other paths.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wgpt.cache import DecodeCache
from wgpt.model import GPT

WARMUP = 2  # eager passes on a side stream before capture, as torch.cuda.graphs asks


class FixedStep:
    """``step(ids)``: the logits (B, V) after the (B, 1) ``ids`` at ``cache.length``, then ``cache.length + 1``.

    Call it only after a pass from position 0 (a prefill) has filled ``cache``; a new prefill may
    come at any time (``cache.reset()`` then ``model(window, cache=cache)``), the steps go on.
    """

    def __init__(self, model: GPT, cache: DecodeCache, batch: int, device: torch.device) -> None:
        self.model, self.cache = model, cache
        self.capture = device.type == "cuda"  # elsewhere the same step runs eagerly
        self.ids = torch.zeros(batch, 1, dtype=torch.long, device=device)
        cache.position = torch.zeros(1, dtype=torch.long, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: Tensor | None = None
        self.buffers: tuple[int, ...] = ()

    def __call__(self, ids: Tensor) -> Tensor:
        if not self.cache.length:
            raise ValueError("a fixed-shape step follows a pass from position 0: prefill the cache first")
        self.ids.copy_(ids)
        self.cache.position.fill_(self.cache.length)
        if not self.capture:
            logits, _ = self.model(self.ids, cache=self.cache)
            return logits.select(1, -1)
        if self.graph is None or self.buffers != self._addresses():
            self._record()
        self.graph.replay()
        self.cache.length += 1
        return self.logits.select(1, -1)

    def _addresses(self) -> tuple[int, ...]:
        """Where the cache's buffers lie: a graph replays only into the memory it was captured with."""
        return tuple(t.data_ptr() for layer in self.cache.layers for t in (layer.kv, layer.prefix) if t is not None)

    def _record(self) -> None:
        """Capture one step (after eager warm-up passes on a side stream); the cache's length is kept as it was."""
        held = self.cache.length
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP):  # writes this position's rows, which the replay writes again
                self.model(self.ids, cache=self.cache)
                self.cache.length = held
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits, _ = self.model(self.ids, cache=self.cache)
        self.cache.length = held
        self.buffers = self._addresses()
