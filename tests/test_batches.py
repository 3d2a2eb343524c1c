"""Training and evaluation windows: a pure function of (seed, step), shifted windows of the split."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wgpt.batches import eval_offsets, get_batch, train_offsets
from wgpt.shards import shard_dtype


def test_batches_depend_only_on_seed_and_step():
    a = train_offsets(10_000, 32, 8, seed=1, step=5)
    assert torch.equal(a, train_offsets(10_000, 32, 8, seed=1, step=5))
    assert not torch.equal(a, train_offsets(10_000, 32, 8, seed=1, step=6))
    assert not torch.equal(a, train_offsets(10_000, 32, 8, seed=2, step=5))
    assert a.max() < 10_000 - 32
    ev = eval_offsets(1000, 32, 4)
    assert ev.tolist() == eval_offsets(1000, 32, 4).tolist() and ev[0] == 0 and ev[-1] == 1000 - 33


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=34, max_size=200), st.integers(0, 10))
def test_batches_are_shifted_windows_of_the_shard(ids, seed):
    data = np.asarray(ids, dtype=shard_dtype(301))
    offsets = train_offsets(len(data), 32, 3, seed=seed, step=0)
    x, y = get_batch(data, offsets, 32)
    for row, o in enumerate(offsets.tolist()):
        assert x[row].tolist() == ids[o : o + 32]
        assert y[row].tolist() == ids[o + 1 : o + 33]
